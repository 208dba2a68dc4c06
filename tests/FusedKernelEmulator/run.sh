#!/usr/bin/env bash
# CPU emulation of the fused CUDA kernels (no GPU): compiles the CUDA C of src/.../Kernels/Cuda (the modules of kernels.json) with g++
# (one std::thread per CUDA thread, mma.sync emulated from the PTX ISA fragment layouts) and compares the tensor-core
# kernels against the CUDA-core ones (GPU-verified) on the same bf16/fp16 inputs: S, z, o, dS, dz, dq, dk, dv.
# The causal tensor-core kernels (causal_linear_attention.cu) are compared with an fp64 evaluation of the causal formulas
# (causal.cpp: o, dq, dk, dv), the causal decay kernels (decay_linear_attention.cu) with one of the decayed formulas (decay.cpp: o, dq, dk, dv, dg), the multi-tensor AdamW (multi_tensor_adamw.cpp) RMSNorm (rms_norm.cpp) rotary (rotary.cpp) and delta-rule chunk scan (delta_state.cpp) kernels with fp64, Hedgehog's feature map kernels (hedgehog_map.cuh) with an fp64 softmax (hedgehog_map.cpp), its projection + map kernels (hedgehog_projection.cuh) with an fp64 evaluation of φ, dx and dW (hedgehog_proj.cpp, also the dW-only kernel on two given (x, dy) pairs), and its attention kernels (HH = 1) with an fp64 evaluation of o, dv, the projection outputs' gradients dy, dx = dy Wᵀ and dW (hedgehog_attn.cpp). Needs g++ >= 12 (C++20 <barrier>, _Float16) and python3. Usage: tests/FusedKernelEmulator/run.sh [quick]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; repo="$here/../.."; out="${TMPDIR:-/tmp}/fused-kernel-emulator"; mkdir -p "$out"
python3 - "$repo/src/ML.LinearAttention.Torch/Attention/Kernels/Cuda" "$out" <<'PY'
import json, os, sys
cuda, out = sys.argv[1], sys.argv[2]
manifest = json.load(open(f'{cuda}/kernels.json'))
# Every module's root and headers, copied beside kernels.inc; the include guards keep each header once in the
# emulator's single translation unit, which includes the roots in the manifest's order.
files = {f for m in manifest['modules'] for f in [m['source']] + m['headers']}
os.makedirs(f'{out}/cuda', exist_ok=True)
for f in files:
    src = open(f'{cuda}/{f}').read()
    if f == 'common.cuh':
        # fp16 conversions without PTX
        src = src.replace('__device__ __forceinline__ float ldx(in_t x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x)); return f; }',
                          '__device__ __forceinline__ float ldx(in_t x) { _Float16 h; memcpy(&h, &x, 2); return (float)h; }')
        src = src.replace('__device__ __forceinline__ in_t stx(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }',
                          '__device__ __forceinline__ in_t stx(float f) { _Float16 h = (_Float16)f; u16 x; memcpy(&x, &h, 2); return x; }')
        assert 'asm("cvt' not in src
    open(f'{out}/cuda/{f}', 'w').write(src)
open(f'{out}/kernels.inc', 'w').write(''.join(f'#include "cuda/{m["source"]}"\n' for m in manifest['modules']))
PY
# D DV IN_T(1 bf16, 2 fp16) FMAP(0 identity, 1 relu, 2 elu+1)
configs=("64 64 1 1" "64 64 2 2" "32 48 1 2" "32 48 2 0" "128 128 1 2" "16 128 2 1")
[ "${1:-}" = quick ] && configs=("64 64 1 1" "32 48 2 2")
status=0
for c in "${configs[@]}"; do
  read -r d dv in fmap <<<"$c"
  tt=64; if [ "$d" -gt 64 ] || [ "$dv" -gt 64 ]; then tt=32; fi
  exe="$out/emu_${d}_${dv}_${in}_${fmap}"
  g++ -std=c++20 -O2 -w -I"$out" -DD="$d" -DDV="$dv" -DTT=$tt -DPD=$(( (d + 15) / 16 * 16 )) -DPDV=$(( (dv + 15) / 16 * 16 )) \
      -DLDT=$((tt + 4)) -DIN_T="$in" -DFMAP="$fmap" -DMMA=1 "$here/emulator.cpp" -o "$exe" -lpthread
  # B T tiles-per-block: no mask / padded rows, one tile, several tiles per block and several blocks per head
  for args in "1 1 1" "3 37 1" "1 130 1" "3 200 2"; do
    "$exe" $args | tail -1 | sed "s/^/D=$d Dv=$dv in=$in map=$fmap B,T,tpb=${args// /,}: /" || status=1
  done
done
# Causal kernels against the fp64 reference: B T (B > 1: padded rows), odd lengths and several chunks.
for c in "${configs[@]}"; do
  read -r d dv in fmap <<<"$c"
  exe="$out/causal_${d}_${dv}_${in}_${fmap}"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD="$d" -DDV="$dv" -DTT=64 -DPD=$(( (d + 15) / 16 * 16 )) -DPDV=$(( (dv + 15) / 16 * 16 )) \
      -DLDT=68 -DIN_T="$in" -DFMAP="$fmap" -DMMA=1 "$here/causal.cpp" -o "$exe" -lpthread
  for args in "1 1" "3 37" "1 130" "3 200" "1 600"; do
    "$exe" $args | tail -1 | sed "s/^/causal D=$d Dv=$dv in=$in map=$fmap B,T=${args// /,}: /" || status=1
  done
done
# Causal decay kernels (decay_linear_attention.cu) against the fp64 reference: D DV dtype, then B T gate strength
# (g = logsigmoid(x)·strength: 1/16 is simple GLA's gate, 4 decays to nothing within a chunk).
decay_configs=("64 64 1" "64 64 2" "32 48 1" "128 128 2" "16 128 1")
[ "${1:-}" = quick ] && decay_configs=("64 64 1" "32 48 2")
for c in "${decay_configs[@]}"; do
  read -r d dv in <<<"$c"
  exe="$out/decay_${d}_${dv}_${in}"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD="$d" -DDV="$dv" -DTT=64 -DPD=$(( (d + 15) / 16 * 16 )) -DPDV=$(( (dv + 15) / 16 * 16 )) \
      -DLDT=68 -DIN_T="$in" -DFMAP=0 -DMMA=1 "$here/decay.cpp" -o "$exe" -lpthread
  for args in "1 1 0.0625" "3 37 1" "1 130 0.0625" "3 200 1" "1 200 4"; do
    "$exe" $args | tail -1 | sed "s/^/decay D=$d Dv=$dv in=$in B,T,strength=${args// /,}: /" || status=1
  done
done
# Hedgehog's feature map kernels (hedgehog_map.cuh) against fp64: rows F. The vector kernels at F = 8 … 256
# (one to 32 lanes per row, rows not filling the last block); the generic ones at F = 100 and 1.
for in in 0 1 2; do
  exe="$out/hedgehog_map_$in"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD=64 -DDV=64 -DTT=64 -DPD=64 -DPDV=64 -DLDT=68 -DIN_T="$in" -DFMAP=0 -DMMA=1 \
      "$here/hedgehog_map.cpp" -o "$exe" -lpthread
  for args in "37 64" "9 100" "5 16" "1 1" "13 128" "3 256" "70 8" "33 32"; do
    "$exe" $args | tail -1 | sed "s/^/hedgehog map in=$in rows,F=${args// /,}: /" || status=1
  done
done
# Hedgehog's projection + map kernels (hedgehog_projection.cuh) against fp64: D F dtype, then B T blocks-per-head
# (one row, rows not filling a tile, tiles across batch rows, blocks striding over several tiles, T = 1).
for c in "64 64 1" "64 64 2" "32 48 1" "128 128 1" "16 32 2"; do
  read -r d f in <<<"$c"
  exe="$out/hedgehog_proj_${d}_${f}_${in}"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD="$d" -DDV="$f" -DTT=64 -DPD="$d" -DPDV="$f" -DLDT=68 -DIN_T="$in" -DFMAP=0 -DMMA=1 \
      "$here/hedgehog_proj.cpp" -o "$exe" -lpthread
  for args in "1 1 0" "2 37 0" "3 100 2" "70 1 3"; do
    "$exe" $args | tail -1 | sed "s/^/hedgehog projection D=$d F=$f in=$in B,T,blocks=${args// /,}: /" || status=1
  done
done
# Hedgehog's attention kernels (linear_attention_mma_*.cuh with HH = 1: φ from x inside the loaders) against fp64: HX F DV dtype,
# then B T tiles-per-block (one token, padded rows across tiles, several blocks per head).
for c in "64 64 64 1" "64 64 64 2" "32 32 48 1" "16 16 32 2" "64 16 32 1" "128 64 128 2"; do
  read -r hx f dv in <<<"$c"
  d=$((2 * f)); tt=64; if [ "$d" -gt 64 ] || [ "$dv" -gt 64 ]; then tt=32; fi
  exe="$out/hedgehog_attn_${hx}_${f}_${dv}_${in}"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD="$d" -DDV="$dv" -DTT=$tt -DPD="$d" -DPDV=$(( (dv + 15) / 16 * 16 )) -DLDT=$((tt + 4)) \
      -DIN_T="$in" -DFMAP=0 -DMMA=1 -DHH=1 -DHX="$hx" -DHF="$f" "$here/hedgehog_attn.cpp" -o "$exe" -lpthread
  for args in "1 1 1" "3 37 1" "3 200 2" "1 130 1"; do
    "$exe" $args | tail -1 | sed "s/^/hedgehog attention HX=$hx F=$f Dv=$dv in=$in B,T,tpb=${args// /,}: /" || status=1
  done
done
# Multi-tensor AdamW (multi_tensor_adamw.cu) against fp64 AdamW + clip_grad_norm_: low-precision copy fp32/bf16/fp16,
# clipping off, on with a limit every step reaches, on with one no step reaches.
for in in 0 1 2; do
  exe="$out/multi_tensor_adamw_$in"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD=64 -DDV=64 -DTT=64 -DPD=64 -DPDV=64 -DLDT=68 -DIN_T="$in" -DFMAP=0 -DMMA=1 \
      "$here/multi_tensor_adamw.cpp" -o "$exe" -lpthread
  for args in "0 1" "1 1" "1 1e9"; do
    "$exe" $args | tail -1 | sed "s/^/multi-tensor adamw in=$in clip,max=${args// /,}: /" || status=1
  done
done
# Fused RMSNorm (rms_norm.cu) against fp64: rows C weight rows-per-slice (one element, rows not filling a block, no
# weight, C above the warp's stride and not a multiple of 32, one row per dw slice).
for in in 0 1 2; do
  exe="$out/rms_norm_$in"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD=64 -DDV=64 -DTT=64 -DPD=64 -DPDV=64 -DLDT=68 -DIN_T="$in" -DFMAP=0 -DMMA=1 \
      "$here/rms_norm.cpp" -o "$exe" -lpthread
  for args in "1 1 1 1" "37 64 1 8" "9 100 0 4" "20 768 1 7" "3 300 1 1"; do
    "$exe" $args | tail -1 | sed "s/^/rms norm in=$in rows,C,weight,per-slice=${args// /,}: /" || status=1
  done
done
# Fused rotary positions (rotary.cu) against fp64: B H T D (one row, rows not filling a block, the head split's strides, D = 128).
for in in 0 1 2; do
  exe="$out/rotary_$in"
  g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD=64 -DDV=64 -DTT=64 -DPD=64 -DPDV=64 -DLDT=68 -DIN_T="$in" -DFMAP=0 -DMMA=1 \
      "$here/rotary.cpp" -o "$exe" -lpthread
  for args in "1 1 1 64" "3 2 37 64" "2 4 9 32" "1 3 20 128"; do
    "$exe" $args | tail -1 | sed "s/^/rotary in=$in B,H,T,D=${args// /,}: /" || status=1
  done
done
# Delta-rule chunk scan (delta_rule_state.cu) against fp64: N chunks C Dk Dv decay (one chunk, Dv not a multiple of the
# block's 16 columns, per-channel decay, Dk = C = 128, several heads).
exe="$out/delta_state"
g++ -std=c++20 -O2 -w -I"$out" -I"$here" -DD=64 -DDV=64 -DTT=64 -DPD=64 -DPDV=64 -DLDT=68 -DIN_T=0 -DFMAP=0 -DMMA=1 \
    "$here/delta_state.cpp" -o "$exe" -lpthread
for args in "1 1 64 64 64 0" "2 5 64 64 48 1" "1 3 64 32 40 1" "1 2 128 128 16 1" "3 4 16 64 64 0"; do
  "$exe" $args | tail -1 | sed "s/^/delta state N,NC,C,Dk,Dv,decay=${args// /,}: /" || status=1
done
exit $status
