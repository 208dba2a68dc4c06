// CPU emulation of the delta-rule chunk scan (delta_rule_state.cu, see run.sh) against an fp64 evaluation on the same
// fp32 inputs: forward (states before each chunk, V' = U − W S, S ← d ⊙ S + K̃ᵀ V') and the reverse scan of the backward
// (Λ before each step, dV'total = dV' + K̃ Λ, Λ ← d ⊙ Λ − Wᵀ dV'total + dStates), read and written through the packed
// layout FusedDeltaRuleState uses. Arguments: N chunks C Dk Dv decay(0 none, 1 per channel).
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    const int N = atoi(argv[1]), NC = atoi(argv[2]), Cc = atoi(argv[3]), Dk = atoi(argv[4]), Dv = atoi(argv[5]), withDecay = atoi(argv[6]);
    std::mt19937 rng((unsigned)(N * 131 + NC * 17 + Cc * 7 + Dk + Dv + withDecay));
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<float> ud(0.5f, 1.f);
    const long long ab = (long long)Cc * Dk, width = (long long)Dk * Dv + (long long)Cc * Dv;
    std::vector<float> w((size_t)N * NC * ab), kt(w.size()), u((size_t)N * NC * Cc * Dv), d((size_t)N * NC * Dk), g((size_t)N * NC * width);
    // Scaled as the UT transform's outputs are (rows of norm ≲ 1), so that the state stays bounded over the chunks.
    for (auto& e : w) e = nd(rng) * 0.12f;
    for (auto& e : kt) e = nd(rng) * 0.12f;
    for (auto& e : u) e = nd(rng);
    for (auto& e : d) e = ud(rng);
    for (auto& e : g) e = nd(rng);
    const float* dp = withDecay ? d.data() : nullptr;
    const int blocks = (Dv + 15) / 16;
    const int shared = 4 * (2 * Cc * (Dk + 1) + Cc * 16 + Dk * 16);
    if (shared > (int)sizeof(smem4)) { printf("FAIL shared memory %d above the emulator's\n", shared); return 1; }
    std::vector<float> fwd((size_t)N * NC * width, NAN), bwd(fwd.size(), NAN);
    launch(blocks, N, [&] { delta_state_scan(u.data(), (long long)Cc * Dv, w.data(), kt.data(), ab, nullptr, 0, dp,
                                             fwd.data(), fwd.data() + (long long)Dk * Dv, width, NC, Cc, Dk, Dv, -1.f, 1.f, 0); });
    launch(blocks, N, [&] { delta_state_scan(g.data() + (long long)Dk * Dv, width, kt.data(), w.data(), ab, g.data(), width, dp,
                                             bwd.data(), bwd.data() + (long long)Dk * Dv, width, NC, Cc, Dk, Dv, 1.f, -1.f, 1); });
    double errF = 0, errB = 0;
    for (int n = 0; n < N; ++n) {
        // Forward in fp64.
        std::vector<double> S((size_t)Dk * Dv, 0.0), x((size_t)Cc * Dv);
        for (int i = 0; i < NC; ++i) {
            const long long ci = (long long)n * NC + i;
            const float* W = w.data() + ci * ab; const float* K = kt.data() + ci * ab; const float* U = u.data() + ci * Cc * Dv;
            const float* out = fwd.data() + ci * width;
            for (int e = 0; e < Dk * Dv; ++e) errF = std::max(errF, fabs(out[e] - S[e]) / std::max(1.0, fabs(S[e])));
            for (int c = 0; c < Cc; ++c)
                for (int j = 0; j < Dv; ++j) {
                    double s = U[c * Dv + j];
                    for (int k = 0; k < Dk; ++k) s -= (double)W[c * Dk + k] * S[k * Dv + j];
                    x[c * Dv + j] = s;
                    errF = std::max(errF, fabs(out[Dk * Dv + c * Dv + j] - s) / std::max(1.0, fabs(s)));
                }
            for (int k = 0; k < Dk; ++k)
                for (int j = 0; j < Dv; ++j) {
                    double s = S[k * Dv + j] * (dp ? (double)dp[ci * Dk + k] : 1.0);
                    for (int c = 0; c < Cc; ++c) s += (double)K[c * Dk + k] * x[c * Dv + j];
                    S[k * Dv + j] = s;
                }
        }
        // Reverse scan in fp64.
        std::vector<double> L((size_t)Dk * Dv, 0.0);
        for (int i = NC - 1; i >= 0; --i) {
            const long long ci = (long long)n * NC + i;
            const float* W = w.data() + ci * ab; const float* K = kt.data() + ci * ab; const float* G = g.data() + ci * width;
            const float* out = bwd.data() + ci * width;
            for (int e = 0; e < Dk * Dv; ++e) errB = std::max(errB, fabs(out[e] - L[e]) / std::max(1.0, fabs(L[e])));
            for (int c = 0; c < Cc; ++c)
                for (int j = 0; j < Dv; ++j) {
                    double s = G[Dk * Dv + c * Dv + j];
                    for (int k = 0; k < Dk; ++k) s += (double)K[c * Dk + k] * L[k * Dv + j];
                    x[c * Dv + j] = s;
                    errB = std::max(errB, fabs(out[Dk * Dv + c * Dv + j] - s) / std::max(1.0, fabs(s)));
                }
            for (int k = 0; k < Dk; ++k)
                for (int j = 0; j < Dv; ++j) {
                    double s = L[k * Dv + j] * (dp ? (double)dp[ci * Dk + k] : 1.0) + G[k * Dv + j];
                    for (int c = 0; c < Cc; ++c) s -= (double)W[c * Dk + k] * x[c * Dv + j];
                    L[k * Dv + j] = s;
                }
        }
    }
    // fp32 sums of up to 128 products per step, carried over the chunks.
    const bool ok = errF < 1e-4 && errB < 1e-4;
    printf("%s forward %.2e backward %.2e\n", ok ? "OK  " : "FAIL", errF, errB);
    return ok ? 0 : 1;
}
