// CPU emulation of Hedgehog's fused projection + feature map kernels (FusedHedgehogProjectionSource.cs, see run.sh)
// against an fp64 evaluation on the same 16-bit inputs: φ = [softmax(xW_h), softmax(−xW_h)], and from dφ: dx and dW.
// D (head dim) and DV (= F) are the build's macros, H = 2. Arguments: B T blocks-per-head (0: one per tile).
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    const int B = atoi(argv[1]), T = atoi(argv[2]), H = 2, F = DV;
    const long long N = (long long)B * T, rows = N * H;
    const int tiles = (int)((N + 63) / 64), stride = atoi(argv[3]) > 0 ? std::min(atoi(argv[3]), tiles) : tiles;
    std::mt19937 rng((unsigned)(B * 131 + T * 7 + D + F));
    std::normal_distribution<float> nd(0.f, 1.f);
    auto rnd = [&](size_t n, float scale) { std::vector<in_t> v(n); for (auto& e : v) e = stx(scale * nd(rng)); return v; };
    auto x = rnd((size_t)rows * D, 1.f), w = rnd((size_t)H * D * F, 0.3f), dphi = rnd((size_t)rows * 2 * F, 1.f);
    std::vector<in_t> phi((size_t)rows * 2 * F), dx((size_t)rows * D);
    std::vector<float> dw((size_t)H * D * F, 0.f);
    const in_t *X = x.data(), *W = w.data(), *G = dphi.data();
    in_t *P = phi.data(), *DX = dx.data();
    float* DW = dw.data();
    const unsigned long long M = T == 1 ? 0ull : ~0ull / (unsigned long long)T + 1;   // as FusedHedgehogProjection.DivisionMultiplier
    launch(stride, H, [&] { hedgehog_proj_fwd(X, W, P, T, H, N, stride, M); });
    launch(stride, H, [&] { hedgehog_proj_bwd(X, W, G, DX, DW, T, H, N, stride, M); });
    // hedgehog_dy_bwd on a given dy (the attention kernels' output): dx and dW only.
    auto dyIn = rnd((size_t)rows * F, 1.f);
    std::vector<in_t> dx2((size_t)rows * D);
    std::vector<float> dw2((size_t)H * D * F, 0.f);
    in_t* DX2 = dx2.data();
    float* DW2 = dw2.data();
    const in_t* DY = dyIn.data();
    launch(stride, H, [&] { hedgehog_dy_bwd(X, W, DY, DX2, DW2, T, H, N, stride, M); });
    double ePhi = 0, eDx = 0, mDx = 1e-30, eDw = 0, mDw = 1e-30;
    std::vector<double> dwRef((size_t)H * D * F, 0.0), y(F), ref(2 * F), dy(F);
    for (long long r = 0; r < rows; ++r) {
        const int h = (int)((r / T) % H);
        for (int f = 0; f < F; ++f) {
            double s = 0;
            for (int d = 0; d < D; ++d) s += (double)ldx(X[r * D + d]) * ldx(W[((size_t)h * D + d) * F + f]);
            y[f] = s;
        }
        const double hi = *std::max_element(y.begin(), y.end()), lo = *std::min_element(y.begin(), y.end());
        double sp = 0, sm = 0;
        for (int f = 0; f < F; ++f) { sp += exp(y[f] - hi); sm += exp(lo - y[f]); }
        for (int f = 0; f < F; ++f) { ref[f] = exp(y[f] - hi) / sp; ref[F + f] = exp(lo - y[f]) / sm; }
        double dp = 0, dm = 0;
        for (int f = 0; f < F; ++f) { dp += ref[f] * ldx(G[r * 2 * F + f]); dm += ref[F + f] * ldx(G[r * 2 * F + F + f]); }
        for (int f = 0; f < F; ++f) dy[f] = ref[f] * (ldx(G[r * 2 * F + f]) - dp) - ref[F + f] * (ldx(G[r * 2 * F + F + f]) - dm);
        for (int j = 0; j < 2 * F; ++j) ePhi = std::max(ePhi, fabs(ldx(P[r * 2 * F + j]) - ref[j]) + (std::isnan(ldx(P[r * 2 * F + j])) ? 1e9 : 0));
        for (int d = 0; d < D; ++d) {
            double s = 0;
            for (int f = 0; f < F; ++f) { s += dy[f] * ldx(W[((size_t)h * D + d) * F + f]); dwRef[((size_t)h * D + d) * F + f] += ldx(X[r * D + d]) * dy[f]; }
            eDx = std::max(eDx, fabs(ldx(DX[r * D + d]) - s) + (std::isnan(ldx(DX[r * D + d])) ? 1e9 : 0));
            mDx = std::max(mDx, fabs(s));
        }
    }
    double eDx2 = 0, mDx2 = 1e-30, eDw2 = 0, mDw2 = 1e-30;
    std::vector<double> dw2Ref((size_t)H * D * F, 0.0);
    for (long long r = 0; r < rows; ++r) {
        const int h = (int)((r / T) % H);
        for (int d = 0; d < D; ++d) {
            double s = 0;
            for (int f = 0; f < F; ++f) {
                const double g = ldx(DY[r * F + f]);
                s += g * ldx(W[((size_t)h * D + d) * F + f]);
                dw2Ref[((size_t)h * D + d) * F + f] += ldx(X[r * D + d]) * g;
            }
            eDx2 = std::max(eDx2, fabs(ldx(DX2[r * D + d]) - s) + (std::isnan(ldx(DX2[r * D + d])) ? 1e9 : 0));
            mDx2 = std::max(mDx2, fabs(s));
        }
    }
    for (size_t i = 0; i < dw2.size(); ++i) { eDw2 = std::max(eDw2, fabs(dw2[i] - dw2Ref[i]) + (std::isnan(dw2[i]) ? 1e9 : 0)); mDw2 = std::max(mDw2, fabs(dw2Ref[i])); }
    eDx2 /= mDx2; eDw2 /= mDw2;
    for (size_t i = 0; i < dw.size(); ++i) { eDw = std::max(eDw, fabs(dw[i] - dwRef[i]) + (std::isnan(dw[i]) ? 1e9 : 0)); mDw = std::max(mDw, fabs(dwRef[i])); }
    eDx /= mDx; eDw /= mDw;
    // φ ≤ 1 (absolute error is relative); dx and dW relative to their largest entry: 16-bit φ, dy and dx bound them near 1e-2.
    const bool ok = ePhi < 1e-2 && eDx < 2e-2 && eDw < 2e-2 && eDx2 < 2e-2 && eDw2 < 2e-2;
    printf("%s phi %.2e dx %.2e dW %.2e; from dy: dx %.2e dW %.2e (stride %d of %d tiles)\n", ok ? "OK  " : "FAIL", ePhi, eDx, eDw, eDx2, eDw2,
           stride, tiles);
    return ok ? 0 : 1;
}
