// CPU emulation of Hedgehog's fused projection + feature map kernels (hedgehog_projection.cuh, see run.sh)
// against an fp64 evaluation on the same 16-bit inputs: φ = [softmax(xW_h), softmax(−xW_h)], and from dφ: dx and dW;
// and hedgehog_dw_bwd: dW of two (x, dy) pairs in one launch.
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
    // hedgehog_dw_bwd on two given (x, dy) pairs in one launch (grid y = 2H), as Hedgehog's attention uses it: dW only.
    auto dyIn = rnd((size_t)rows * F, 1.f), x1 = rnd((size_t)rows * D, 1.f), dy1 = rnd((size_t)rows * F, 1.f);
    std::vector<float> dw2((size_t)H * D * F, 0.f), dw3 = dw2;
    float *DW2 = dw2.data(), *DW3 = dw3.data();
    const in_t *DY = dyIn.data(), *X1 = x1.data(), *DY1 = dy1.data();
    launch(stride, 2 * H, [&] { hedgehog_dw_bwd(X, DY, DW2, X1, DY1, DW3, T, H, N, stride, M); });
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
    // dW of each pair against fp64 (relative to its largest entry)
    auto dwError = [&](const in_t* xs, const in_t* dys, const std::vector<float>& got) {
        std::vector<double> ref((size_t)H * D * F, 0.0);
        for (long long r = 0; r < rows; ++r) {
            const int h = (int)((r / T) % H);
            for (int d = 0; d < D; ++d)
                for (int f = 0; f < F; ++f) ref[((size_t)h * D + d) * F + f] += (double)ldx(xs[r * D + d]) * ldx(dys[r * F + f]);
        }
        double e = 0, m = 1e-30;
        for (size_t i = 0; i < got.size(); ++i) { e = std::max(e, fabs(got[i] - ref[i]) + (std::isnan(got[i]) ? 1e9 : 0)); m = std::max(m, fabs(ref[i])); }
        return e / m;
    };
    const double eDw2 = dwError(X, DY, dw2), eDw3 = dwError(X1, DY1, dw3);
    for (size_t i = 0; i < dw.size(); ++i) { eDw = std::max(eDw, fabs(dw[i] - dwRef[i]) + (std::isnan(dw[i]) ? 1e9 : 0)); mDw = std::max(mDw, fabs(dwRef[i])); }
    eDx /= mDx; eDw /= mDw;
    // φ ≤ 1 (absolute error is relative); dx and dW relative to their largest entry: 16-bit φ, dy and dx bound them near 1e-2.
    // The dW-only kernel sums exact products of 16-bit inputs in fp32: only the order differs from fp64.
    const bool ok = ePhi < 1e-2 && eDx < 2e-2 && eDw < 2e-2 && eDw2 < 1e-4 && eDw3 < 1e-4;
    printf("%s phi %.2e dx %.2e dW %.2e; dW from dy: %.2e, %.2e (stride %d of %d tiles)\n", ok ? "OK  " : "FAIL", ePhi, eDx, eDw, eDw2, eDw3,
           stride, tiles);
    return ok ? 0 : 1;
}
