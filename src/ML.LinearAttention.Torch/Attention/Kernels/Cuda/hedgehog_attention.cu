// NVRTC module "hedgehog_attention" (kernels.json; FusedModuleCache.GetHedgehog): the tensor-core attention kernels
// built with HH = 1, φ = [softmax(x W_h), softmax(−x W_h)] computed from x inside the loaders (mma_fwd_state,
// mma_fwd_out, mma_fwd_head, mma_bwd_q, mma_bwd_kv), with the projection kernels for dW (hedgehog_dw_bwd).
// HH = 1 comes from the manifest; HX (x's width), HF (F; D = 2F) and HH_MINB (blocks per SM, when set) as -D options.
// The module also carries the CUDA-core kernels, which its launcher does not call.
#include "common.cuh"
#include "linear_attention_cuda_core.cuh"
#include "mma_common.cuh"
#include "mma_tiles.cuh"
#include "hedgehog_map.cuh"
#include "hedgehog_projection_helpers.cuh"
#include "hedgehog_projection.cuh"
#include "hedgehog_warp_forward.cuh"
#include "hedgehog_warp_backward.cuh"
#include "linear_attention_mma_forward.cuh"
#include "linear_attention_mma_backward.cuh"
