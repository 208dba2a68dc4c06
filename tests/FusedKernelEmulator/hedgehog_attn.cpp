// CPU emulation of Hedgehog's attention kernels (the tensor-core kernels of linear_attention_mma_*.cuh built with HH = 1, see
// run.sh): φ = [softmax(xW_h), softmax(−xW_h)] computed in the tile loaders from x, never stored. Compared with an fp64
// evaluation on the same 16-bit inputs: o, S and z (two kernels, and the whole-head mma_fwd_head), and the gradients the kernels
// return: dv, and for q and k the gradient of the projection's output y = xW (F wide),
// dy = φ₊ ⊙ (dφ₊ − ⟨φ₊, dφ₊⟩) − φ₋ ⊙ (dφ₋ − ⟨φ₋, dφ₋⟩), and dx = dy Wᵀ; then dW = xᵀdy of both maps from hedgehog_dw_bwd
// on the kernels' dy.
// Build macros: HX (x's width), HF (F), D = 2·HF, DV. Arguments: B T tiles-per-block (B > 1: padded rows).
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    const int B = atoi(argv[1]), H = 2, T = atoi(argv[2]), F = HF, P = 2 * HF;
    static_assert(D == 2 * HF, "φ is 2F wide");
    const bool useMask = B > 1;
    std::mt19937 rng((unsigned)(T * 13 + B + HX + F));
    std::normal_distribution<float> nd(0.f, 1.f);
    auto rnd = [&](size_t n, float scale) { std::vector<in_t> x(n); for (auto& e : x) e = stx(scale * nd(rng)); return x; };
    const size_t nx = (size_t)B * H * T * HX, nv = (size_t)B * H * T * DV, np = (size_t)B * H * T * P, ny = (size_t)B * H * T * F;
    auto xq = rnd(nx, 1.f), xk = rnd(nx, 1.f), v = rnd(nv, 1.f), dO = rnd(nv, 1.f);
    // y = xW with entries of about unit scale times 2 at every HX, as `--verify-fused` draws them (a fixed weight scale
    // made y spikier as HX grew, φq·φk tiny and T = 1's already ill-conditioned q gradient worse than bf16 resolves).
    const float ws = 2.f / sqrtf((float)HX);
    auto wq = rnd((size_t)H * HX * F, ws), wk = rnd((size_t)H * HX * F, ws);
    std::vector<u8> mask(B * T);
    std::vector<float> epsn(B);
    for (int b = 0; b < B; ++b) {
        int len = !useMask || b == 0 ? T : b == 1 ? max(1, T / 2) : max(1, T - 5);
        for (int t = 0; t < T; ++t) mask[b * T + t] = t < len;
        epsn[b] = 1e-3f * len;
    }
    const u8* mp = useMask ? mask.data() : nullptr;
    const int BH = B * H, tiles = (T + 63) / 64, tpb = min(tiles, max(1, atoi(argv[3]))), blocks = (tiles + tpb - 1) / tpb;
    // One block per head: the kernels store S, z, dS and dz outright (put_sum), so the sums start as NaN.
    const float unset = blocks == 1 ? NAN : 0.f;
    std::vector<float> S((size_t)BH * D * DV, unset), z((size_t)BH * D, unset), dS = S, dz = z;
    std::vector<in_t> o(nv, 0), dyq(ny, 0), dyk(ny, 0), dv(nv, 0), dxq(nx, 0), dxk(nx, 0);
    // The dW sums of both maps [2][H][HX][F], as the host allocates them: unset (NaN here), mma_bwd_q zeroes them.
    std::vector<float> dw((size_t)2 * H * HX * F, NAN);
    {
        const in_t *Q = xq.data(), *K = xk.data(), *V = v.data(), *G = dO.data(), *WQ = wq.data(), *WK = wk.data();
        float *Sp = S.data(), *zp = z.data(), *dSp = dS.data(), *dzp = dz.data();
        in_t *op = o.data(), *dqp = dyq.data(), *dkp = dyk.data(), *dvp = dv.data(), *dxqp = dxq.data(), *dxkp = dxk.data();
        float *dwqp = dw.data(), *dwkp = dw.data() + (size_t)H * HX * F;
        const float* en = epsn.data();
        launch(blocks, BH, [&] { mma_fwd_state(K, V, mp, T, H, tpb, Sp, zp, WK); });
        launch(blocks, BH, [&] { mma_fwd_out(Q, Sp, zp, mp, en, T, H, tpb, op, WQ); });
        launch(blocks, BH, [&] { mma_bwd_q(Q, G, op, Sp, zp, mp, en, T, H, tpb, dqp, dSp, dzp, WQ, dxqp, dwqp); });
        // With HH_KV_DW (bf16 where the sums fit) mma_bwd_kv adds the key map's dW into its sums itself and stores no dy_k.
        launch(blocks, BH, [&] { mma_bwd_kv(K, V, dSp, dzp, mp, T, H, tpb, dkp, dvp, WK, dxkp, dwqp); });
        // dW of both maps in one launch (grid y = 2H; H, the query map alone, with HH_KV_DW), two blocks per head striding
        // over the tiles when there are several.
        const long long N = (long long)B * T;
        const int stride = (int)std::min<long long>(2, (N + 63) / 64);
        const unsigned long long M = T == 1 ? 0ull : ~0ull / (unsigned long long)T + 1;
        launch(stride, (HH_KV_DW ? 1 : 2) * H, [&] { hedgehog_dw_bwd(Q, dqp, dwqp, K, dkp, dwkp, T, H, N, stride, M); });
    }
    // The whole-head forward (one block per head, its own warp-by-warp passes): S, z and o against the same fp64 values.
    std::vector<float> S1((size_t)BH * D * DV, NAN), z1((size_t)BH * D, NAN), epsn1(B, NAN);
    std::vector<in_t> o1(nv, 0);
    {
        const in_t *Q = xq.data(), *K = xk.data(), *V = v.data(), *WQ = wq.data(), *WK = wk.data();
        float *Sp = S1.data(), *zp = z1.data();
        in_t* op = o1.data();
        // eps·n counted by the kernel itself (eps > 0), into a buffer that starts as NaN.
        float* enp = epsn1.data();
        launch(1, BH, [&] { mma_fwd_head(Q, K, V, mp, enp, 1e-3f, T, H, Sp, zp, op, WK, WQ); });
    }
    // fp64 reference.
    std::vector<double> ro(nv, 0), rdq(np, 0), rdk(np, 0), rdv(nv, 0), rdyq(ny, 0), rdyk(ny, 0), rdxq(nx, 0), rdxk(nx, 0);
    std::vector<double> rdwq((size_t)H * HX * F, 0), rdwk = rdwq;
    std::vector<double> rS((size_t)BH * P * DV), rz((size_t)BH * P);
    for (int bh = 0; bh < BH; ++bh) {
        const int b = bh / H, h = bh % H;
        auto real = [&](int t) { return !mp || mask[b * T + t]; };
        auto feat = [&](const std::vector<in_t>& x, const std::vector<in_t>& w, int t, std::vector<double>& phi) {
            std::vector<double> y(F);
            for (int f = 0; f < F; ++f) {
                double s = 0;
                for (int d = 0; d < HX; ++d) s += (double)ldx(x[((size_t)bh * T + t) * HX + d]) * ldx(w[((size_t)h * HX + d) * F + f]);
                y[f] = s;
            }
            const double hi = *std::max_element(y.begin(), y.end()), lo = *std::min_element(y.begin(), y.end());
            double sp = 0, sm = 0;
            for (int f = 0; f < F; ++f) { sp += exp(y[f] - hi); sm += exp(lo - y[f]); }
            for (int f = 0; f < F; ++f) { phi[f] = real(t) ? exp(y[f] - hi) / sp : 0; phi[F + f] = real(t) ? exp(lo - y[f]) / sm : 0; }
        };
        std::vector<std::vector<double>> fq(T, std::vector<double>(P)), fk(T, std::vector<double>(P));
        for (int t = 0; t < T; ++t) { feat(xq, wq, t, fq[t]); feat(xk, wk, t, fk[t]); }
        auto vv = [&](int t, int e) { return (double)ldx(v[((size_t)bh * T + t) * DV + e]); };
        auto go = [&](int t, int e) { return (double)ldx(dO[((size_t)bh * T + t) * DV + e]); };
        std::vector<double> s((size_t)P * DV, 0), zz(P, 0), ds((size_t)P * DV, 0), dzz(P, 0);
        for (int t = 0; t < T; ++t)
            for (int d = 0; d < P; ++d) { zz[d] += fk[t][d]; for (int e = 0; e < DV; ++e) s[(size_t)d * DV + e] += fk[t][d] * vv(t, e); }
        std::copy(s.begin(), s.end(), rS.begin() + (size_t)bh * P * DV);
        std::copy(zz.begin(), zz.end(), rz.begin() + (size_t)bh * P);
        std::vector<std::vector<double>> g(T, std::vector<double>(DV, 0));
        std::vector<double> dd(T, 0);
        for (int t = 0; t < T; ++t) {
            if (!real(t)) continue;
            double den = epsn[b], dot = 0;
            for (int d = 0; d < P; ++d) den += fq[t][d] * zz[d];
            for (int e = 0; e < DV; ++e) {
                double num = 0;
                for (int d = 0; d < P; ++d) num += fq[t][d] * s[(size_t)d * DV + e];
                ro[((size_t)bh * T + t) * DV + e] = num / den;
                dot += go(t, e) * num / den;
                g[t][e] = go(t, e) / den;
            }
            dd[t] = -dot / den;
            for (int d = 0; d < P; ++d) {
                double x = dd[t] * zz[d];
                for (int e = 0; e < DV; ++e) x += g[t][e] * s[(size_t)d * DV + e];
                rdq[((size_t)bh * T + t) * P + d] = x;
                dzz[d] += fq[t][d] * dd[t];
                for (int e = 0; e < DV; ++e) ds[(size_t)d * DV + e] += fq[t][d] * g[t][e];
            }
        }
        for (int t = 0; t < T; ++t) {
            if (!real(t)) continue;
            for (int d = 0; d < P; ++d) {
                double x = dzz[d];
                for (int e = 0; e < DV; ++e) x += vv(t, e) * ds[(size_t)d * DV + e];
                rdk[((size_t)bh * T + t) * P + d] = x;
            }
            for (int e = 0; e < DV; ++e) {
                double x = 0;
                for (int d = 0; d < P; ++d) x += fk[t][d] * ds[(size_t)d * DV + e];
                rdv[((size_t)bh * T + t) * DV + e] = x;
            }
        }
        // dy from dφ and φ (softmax backward of both halves).
        for (int t = 0; t < T; ++t)
            for (int side = 0; side < 2; ++side) {
                const std::vector<double>& phi = side ? fk[t] : fq[t];
                const double* dphi = (side ? rdk.data() : rdq.data()) + ((size_t)bh * T + t) * P;
                double sp = 0, sm = 0;
                for (int f = 0; f < F; ++f) { sp += phi[f] * dphi[f]; sm += phi[F + f] * dphi[F + f]; }
                for (int f = 0; f < F; ++f)
                    (side ? rdyk : rdyq)[((size_t)bh * T + t) * F + f] = phi[f] * (dphi[f] - sp) - phi[F + f] * (dphi[F + f] - sm);
                // dx = dy Wᵀ, and dW = xᵀdy from the kernels' own (16-bit) dy, as hedgehog_dw_bwd takes it.
                const std::vector<in_t>& x = side ? xk : xq;
                const std::vector<in_t>& w = side ? wk : wq;
                const double* dyr = (side ? rdyk : rdyq).data() + ((size_t)bh * T + t) * F;
                const in_t* dyk16 = (side ? dyk : dyq).data() + ((size_t)bh * T + t) * F;
                for (int d = 0; d < HX; ++d) {
                    double acc = 0;
                    const double xd = ldx(x[((size_t)bh * T + t) * HX + d]);
                    for (int f = 0; f < F; ++f) {
                        const double wdf = ldx(w[((size_t)h * HX + d) * F + f]);
                        acc += dyr[f] * wdf;
                        // (mma_bwd_kv's own dy never leaves it under HH_KV_DW: the fp64 one, compared more loosely below)
                        (side ? rdwk : rdwq)[((size_t)h * HX + d) * F + f] += xd * (side && HH_KV_DW ? dyr[f] : ldx(dyk16[f]));
                    }
                    (side ? rdxk : rdxq)[((size_t)bh * T + t) * HX + d] = acc;
                }
            }
    }
    double worst = 0;
    auto cmp = [&](const char* n, const std::vector<double>& ref, const std::vector<in_t>& got) {
        double mx = 0, d = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
            const float y = ldx(got[i]);
            mx = max(mx, fabs(ref[i]));
            d = max(d, std::isnan(y) ? 1e9 : fabs(ref[i] - y));
        }
        // relative to max(1, max|ref|), as emulator.cpp and `bench kernels --verify-fused` (the q and k gradients at T = 1,
        // where o = v and dφ nearly cancels, compare absolutely)
        const double rel = d / max(1.0, mx);
        worst = max(worst, rel);
        printf("  %-4s max|ref| %.3e  max diff %.3e  rel %.2e\n", n, mx, d, rel);
    };
    printf("HX=%d F=%d DV=%d IN_T=%d B=%d T=%d tpb=%d\n", HX, F, DV, IN_T, B, T, tpb);
    cmp("o", ro, o); cmp("dyq", rdyq, dyq); if (!HH_KV_DW) cmp("dyk", rdyk, dyk); cmp("dxq", rdxq, dxq); cmp("dxk", rdxk, dxk); cmp("dv", rdv, dv);
    cmp("o1", ro, o1);
    auto cmpw = [&](const char* n, const std::vector<double>& ref, const std::vector<float>& got, bool own) {   // fp32 sums
        double mx = 0, d = 0;
        for (size_t i = 0; i < ref.size(); ++i) { mx = max(mx, fabs(ref[i])); d = max(d, std::isnan(got[i]) ? 1e9 : fabs(ref[i] - got[i])); }
        // From the kernels' own 16-bit dy: the same products in another order, far below 1e-4 relative. HH_KV_DW's dW_k
        // against the fp64 dy: as dy itself and dx, relative to max(1, max|ref|) (at T = 1 dy is ill-conditioned).
        const double rel = own ? d / max(1e-30, mx) : d / max(1.0, mx);
        worst = max(worst, own ? rel * 100 : rel);
        printf("  %-4s max|ref| %.3e  max diff %.3e  rel %.2e\n", n, mx, d, rel);
    };
    const std::vector<float> dwq(dw.begin(), dw.begin() + (size_t)H * HX * F), dwk(dw.begin() + (size_t)H * HX * F, dw.end());
    cmpw("dwq", rdwq, dwq, true); cmpw("dwk", rdwk, dwk, !HH_KV_DW);
    // S and z as stored for the backward, by the two kernels (atomics) and by the whole-head kernel (plain stores).
    auto cmpf = [&](const char* n, const std::vector<double>& ref, const std::vector<float>& got) {
        double mx = 0, d = 0;
        for (size_t i = 0; i < ref.size(); ++i) { mx = max(mx, fabs(ref[i])); d = max(d, std::isnan(got[i]) ? 1e9 : fabs(ref[i] - got[i])); }
        const double rel = d / max(1.0, mx);
        worst = max(worst, rel);
        printf("  %-4s max|ref| %.3e  max diff %.3e  rel %.2e\n", n, mx, d, rel);
    };
    cmpf("S", rS, S); cmpf("z", rz, z); cmpf("S1", rS, S1); cmpf("z1", rz, z1);
    cmpf("en1", std::vector<double>(epsn.begin(), epsn.end()), epsn1);
    const bool ok = worst < 2e-2;
    printf("%s worst rel %.2e\n", ok ? "OK  " : "FAIL", worst);
    return ok ? 0 : 1;
}
