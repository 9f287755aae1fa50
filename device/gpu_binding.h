// Which of the GPUs a worker process sees it takes, decided in one place for every launcher.
// Why: under Slurm with one GPU bound per task (srun --gpus-per-task=1, or CUDA_VISIBLE_DEVICES
// set per rank by a wrapper) each task sees exactly one GPU, device 0, whatever its node-local
// rank; taking cuda:$SLURM_LOCALID there fails on every rank but the first of a node. With all of
// the node's GPUs visible, node-local rank r takes GPU r. Torch-free.
#pragma once

namespace keel {

// The index of the visible GPU for node-local rank `local_rank` when `visible_gpus` are visible:
// 0 when exactly one is (one GPU bound per task), else local_rank. Throws KeelError when no GPU is
// visible or the rank has none (more workers than GPUs on a node), saying what to change.
int gpu_for_local_rank(int local_rank, int visible_gpus);

}  // namespace keel
