// NVRTC module "hedgehog_map" (kernels.json; FusedHedgehogMap): Hedgehog's feature map kernels
// (hedgehog_map_fwd, hedgehog_map_bwd and their _vec forms), compiled with MMA = 0 for any input type.
// The module also carries the CUDA-core kernels, which its launcher does not call.
#include "common.cuh"
#include "linear_attention_cuda_core.cuh"
#include "hedgehog_map.cuh"
