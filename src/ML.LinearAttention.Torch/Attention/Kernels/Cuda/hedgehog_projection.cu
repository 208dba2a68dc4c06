// NVRTC module "hedgehog_projection" (kernels.json; FusedHedgehogProjection): Hedgehog's projection + map kernels
// (hedgehog_proj_fwd, hedgehog_proj_bwd, hedgehog_dw_bwd), compiled with MMA = 1, D = head dim, DV = F.
// HFWD_MINB and HBWD_MINB come as -D options when FusedKernelOptions.HedgehogProjectionBlocks sets them.
// The module also carries the CUDA-core kernels, which its launcher does not call.
#include "common.cuh"
#include "linear_attention_cuda_core.cuh"
#include "mma_common.cuh"
#include "mma_tiles.cuh"
#include "hedgehog_map.cuh"
#include "hedgehog_projection_helpers.cuh"
#include "hedgehog_projection.cuh"
