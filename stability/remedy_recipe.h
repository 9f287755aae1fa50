// The "Spike No More" remedy recipe (Takase et al., arXiv 2312.16903): what a run restarted from
// scratch after the monitor's remedy escalation (policy.h, on_repeated_spikes = remedy_restart)
// changes in its parent's config. It sits beside the policy that asks for it so the escalation and
// its cure are read together. It is plain data, config overrides in the `--set section.key=value`
// form (common/config.h, apply_override), so it needs neither the model nor the run config, and the
// launcher applies it exactly as it applies a user's --set. Torch-free.
#pragma once

#include <string>
#include <vector>

namespace keel {

struct RemedyRecipe {
  // Spike No More: embeddings scaled by sqrt(d) with the small init keep the first layer norm's
  // input near unit scale, which bounds the gradient spikes that the repeated rollbacks could not.
  std::string embed_scale = "sqrt_d";  // model.embed_scale
  std::string init = "small";          // model.init
  double parent_lr = 0;                // the parent's train.lr (for the message)
  double lr = 0;                       // train.lr of the child: parent_lr x the monitor's lr_scale
  // One remedy per lineage: the child aborts on its own repeated spikes instead of restarting again.
  std::string on_repeated_spikes = "abort";  // stability.on_repeated_spikes
  std::string recipe;                        // run.recipe: the parent's with "+remedy"
  // model.norm of the child, "" = the parent's. A parent without normalisation (model.norm = none)
  // gets LayerNorm: Spike No More's conditions are about the layer norms' input, and a norm-free
  // model whose explosion returned after an LR cut is not fixed by a lower LR (stability_monitor.h).
  std::string norm;


  // The recipe as `section.key=value` assignments for apply_override, in the order of the fields
  // (model.norm last, and only when set).
  // Strings are YAML double-quoted (a recipe name may hold ':' or '#'); train.lr is written in the
  // shortest form that reads back as the same double, so the child's LR is exact.
  std::vector<std::string> overrides() const;
};

// The remedy for a parent run of recipe `parent_recipe` with peak LR `parent_lr` and model.norm
// `parent_norm`; `lr_scale` is the LR factor the monitor diagnosed (MonitorDecision::lr_scale,
// carried as TrainResult::lr_scale).
RemedyRecipe remedy_recipe(const std::string& parent_recipe, double parent_lr, double lr_scale,
                           const std::string& parent_norm = "pre_ln");

}  // namespace keel
