// Decoding caches (see kv_cache.h).
#include "generation/kv_cache.h"

#include "common/check.h"

namespace keel {

std::pair<torch::Tensor, torch::Tensor> LayerCache::append(const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t t = k.size(2);
  if (!keys_.defined()) {
    keys_ = torch::empty({k.size(0), k.size(1), capacity_, k.size(3)}, k.options());
    values_ = torch::empty({v.size(0), v.size(1), capacity_, v.size(3)}, v.options());
  }
  KEEL_CHECK(length_ + t <= capacity_, "KV cache full: " << length_ << " + " << t << " positions exceed its capacity "
                                                         << capacity_);
  keys_.narrow(2, length_, t).copy_(k);
  values_.narrow(2, length_, t).copy_(v);
  length_ += t;
  return {keys_.narrow(2, 0, length_), values_.narrow(2, 0, length_)};
}

int64_t LayerCache::bytes() const {
  int64_t n = 0;
  for (const auto* t : {&keys_, &values_, &state_}) {
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  }
  return n;
}

DecodeCache::DecodeCache(int64_t num_layers, int64_t capacity) {
  for (int64_t i = 0; i < num_layers; ++i) layers_.push_back(std::make_unique<LayerCache>(capacity));
}

std::vector<AttentionCache*> DecodeCache::pointers() {
  std::vector<AttentionCache*> out;
  for (auto& layer : layers_) out.push_back(layer.get());
  return out;
}

int64_t DecodeCache::bytes() const {
  int64_t n = 0;
  for (const auto& layer : layers_) n += layer->bytes();
  return n;
}

}  // namespace keel
