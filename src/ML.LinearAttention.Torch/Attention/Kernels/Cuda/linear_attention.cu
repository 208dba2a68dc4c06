// NVRTC module "linear_attention" (kernels.json; FusedModuleCache.Get): bidirectional normalized linear attention,
// the CUDA-core kernels and, when MMA = 1, their tensor-core twins (mma_fwd_state, mma_fwd_out, mma_bwd_q,
// mma_bwd_kv). Shape, dtype and feature map come as -D options.
#include "common.cuh"
#include "linear_attention_cuda_core.cuh"
#include "mma_common.cuh"
#include "mma_tiles.cuh"
#include "linear_attention_mma_forward.cuh"
#include "linear_attention_mma_backward.cuh"
