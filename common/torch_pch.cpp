// Empty TU: carries the precompiled <torch/torch.h> that every Torch target reuses.
