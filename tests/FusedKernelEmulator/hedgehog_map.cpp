// CPU emulation of the fused Hedgehog feature map kernels (hedgehog_map.cuh, see run.sh) against an fp64
// evaluation on the same 16-bit inputs: φ = [softmax(y), softmax(−y)] and dy from (φ, dφ). Arguments: rows F.
// Reuses emulator.cpp's CUDA emulation (one std::thread per CUDA thread, warp shuffles).
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    long long rows = atoll(argv[1]);
    int F = atoi(argv[2]);
    std::mt19937 rng((unsigned)(rows * 7 + F));
    std::normal_distribution<float> nd(0.f, 2.f);
    auto rnd = [&](size_t n) { std::vector<in_t> x(n); for (auto& e : x) e = stx(nd(rng)); return x; };
    auto y = rnd((size_t)rows * F), dphi = rnd((size_t)rows * 2 * F);
    std::vector<in_t> phi((size_t)rows * 2 * F), dy((size_t)rows * F);
    const in_t *Y = y.data(), *G = dphi.data();
    in_t *P = phi.data(), *DY = dy.data();
    // The vector kernels where F = L·V with L a power of two up to 32 (as FusedHedgehogMap.VectorLanes), else the generic.
    int V = 16 / (int)sizeof(in_t), L = F % V == 0 && F / V <= 32 && ((F / V) & (F / V - 1)) == 0 ? F / V : 0;
    if (L > 0) {
        int blocks = (int)((rows * L + 255) / 256);
        launch(blocks, 1, [&] { hedgehog_map_fwd_vec(Y, P, rows, L); });
        launch(blocks, 1, [&] { hedgehog_map_bwd_vec(P, G, DY, rows, L); });
    } else {
        int blocks = (int)((rows + 7) / 8);
        launch(blocks, 1, [&] { hedgehog_map_fwd(Y, P, rows, F); });
        launch(blocks, 1, [&] { hedgehog_map_bwd(P, G, DY, rows, F); });
    }
    double worstPhi = 0, worstDy = 0, scaleDy = 1;
    std::vector<double> ref(2 * F), dref(F);
    for (long long r = 0; r < rows; ++r) {
        double hi = -1e300, lo = 1e300;
        for (int j = 0; j < F; ++j) { double a = ldx(Y[r * F + j]); hi = std::max(hi, a); lo = std::min(lo, a); }
        double sp = 0, sm = 0;
        for (int j = 0; j < F; ++j) { double a = ldx(Y[r * F + j]); sp += exp(a - hi); sm += exp(lo - a); }
        for (int j = 0; j < F; ++j) { double a = ldx(Y[r * F + j]); ref[j] = exp(a - hi) / sp; ref[F + j] = exp(lo - a) / sm; }
        double dp = 0, dm = 0;
        for (int j = 0; j < F; ++j) { dp += ref[j] * ldx(G[r * 2 * F + j]); dm += ref[F + j] * ldx(G[r * 2 * F + F + j]); }
        for (int j = 0; j < F; ++j)
            dref[j] = ref[j] * (ldx(G[r * 2 * F + j]) - dp) - ref[F + j] * (ldx(G[r * 2 * F + F + j]) - dm);
        for (int j = 0; j < 2 * F; ++j) worstPhi = std::max(worstPhi, fabs(ldx(P[r * 2 * F + j]) - ref[j]));
        for (int j = 0; j < F; ++j) { worstDy = std::max(worstDy, fabs(ldx(DY[r * F + j]) - dref[j])); scaleDy = std::max(scaleDy, fabs(dref[j])); }
    }
    worstDy /= scaleDy;
    // φ ≤ 1, so its error is relative already; 16-bit storage of φ and dy bounds both near 1e-2 at these magnitudes.
    bool ok = worstPhi < 1e-2 && worstDy < 2e-2;
    printf("%s %s phi %.2e dy %.2e\n", ok ? "OK  " : "FAIL", L > 0 ? "vector" : "generic", worstPhi, worstDy);
    return ok ? 0 : 1;
}
