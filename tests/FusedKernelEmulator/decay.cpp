// CPU emulation of the fused causal DECAY kernels (decay_linear_attention.cu; see run.sh): the kernels run with one
// std::thread per CUDA thread and are compared with a straightforward fp64 evaluation of the decayed causal formulas on
// the same (16-bit) inputs: o, dq, dk, dv and the log decays' gradient dg. Arguments: B T gate-strength [scale]:
// g_t = logsigmoid(x_t)·strength with x ~ N(0, 2) (strength 1/16 is simple GLA's gate, 1 a strong decay).
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    int B = atoi(argv[1]), H = 2, T = atoi(argv[2]);
    const double strength = argc > 3 ? atof(argv[3]) : 1.0 / 16;
    const float scale = argc > 4 ? (float)atof(argv[4]) : 1.f / sqrtf((float)D);
    bool useMask = B > 1;
    std::mt19937 rng(T * 13 + B);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto rnd = [&](size_t n) { std::vector<in_t> x(n); for (auto& e : x) e = stx(nd(rng)); return x; };
    size_t nq = (size_t)B * H * T * D, nv = (size_t)B * H * T * DV;
    auto q = rnd(nq), k = rnd(nq), v = rnd(nv), dO = rnd(nv);
    std::vector<float> g((size_t)B * H * T);
    for (auto& e : g) { double x = 2.0 * nd(rng); e = (float)(-log1p(exp(-x)) * strength); }
    std::vector<u8> mask(B * T);
    for (int b = 0; b < B; ++b) {
        int len = !useMask || b == 0 ? T : b == 1 ? max(1, T / 2) : max(1, T - 5);
        for (int t = 0; t < T; ++t) mask[b * T + t] = t < len;
    }
    const u8* mp = useMask ? mask.data() : nullptr;
    int BH = B * H, nc = (T + MTT - 1) / MTT;
    std::vector<float> P((size_t)BH * nc * DCS, 0.f), dP = P, L((size_t)BH * nc, NAN), dG((size_t)BH * T, NAN);
    std::vector<in_t> o(nv, 0), dq(nq, 0), dk(nq, 0), dv(nv, 0);
    const in_t *Q = q.data(), *K = k.data(), *V = v.data(), *G = dO.data();
    const float* gp = g.data();
    float *Pp = P.data(), *dPp = dP.data(), *Lp = L.data(), *dGp = dG.data();
    in_t *op = o.data(), *dqp = dq.data(), *dkp = dk.data(), *dvp = dv.data();
    int scanBlocks = (DCS + NT - 1) / NT;
    launch(nc, BH, [&] { decay_state(K, V, gp, mp, T, H, nc, Pp, Lp); });
    launch(scanBlocks, BH, [&] { decay_scan(Pp, Lp, nc, DCS, 0); });
    launch(nc, BH, [&] { decay_out(Q, K, V, gp, Pp, mp, scale, T, H, nc, op); });
    launch(nc, BH, [&] { decay_bwd_state(Q, G, gp, mp, T, H, nc, dPp); });
    launch(scanBlocks, BH, [&] { decay_scan(dPp, Lp, nc, DCS, 1); });
    launch(nc, BH, [&] { decay_bwd(Q, K, V, G, gp, Pp, dPp, mp, scale, T, H, nc, dqp, dkp, dvp, dGp); });
    // The host's part of dg: reverse cumulative sum of dG over the whole row (FusedDecayLaunch.Backward).
    std::vector<double> dg((size_t)BH * T, 0);
    for (int bh = 0; bh < BH; ++bh) { double run = 0; for (int t = T - 1; t >= 0; --t) { run += dG[(size_t)bh * T + t]; dg[(size_t)bh * T + t] = run; } }

    // fp64 reference: o_t = scale Σ_{s≤t} exp(G_t − G_s) (q_t·k_s) v_s over real keys, padded steps do not decay.
    std::vector<double> ro(nv, 0), rdq(nq, 0), rdk(nq, 0), rdv(nv, 0), rdg((size_t)BH * T, 0);
    for (int bh = 0; bh < BH; ++bh) {
        int b = bh / H;
        auto real = [&](int t) { return !mp || mask[b * T + t]; };
        auto qq = [&](int t, int d) { return real(t) ? (double)ldx(q[((size_t)bh * T + t) * D + d]) : 0.0; };
        auto kk = [&](int t, int d) { return real(t) ? (double)ldx(k[((size_t)bh * T + t) * D + d]) : 0.0; };
        auto vv = [&](int t, int e) { return (double)ldx(v[((size_t)bh * T + t) * DV + e]); };
        auto go = [&](int t, int e) { return real(t) ? (double)ldx(dO[((size_t)bh * T + t) * DV + e]) : 0.0; };
        std::vector<double> cum(T), dGr(T, 0);
        double run = 0;
        for (int t = 0; t < T; ++t) { run += real(t) ? g[(size_t)bh * T + t] : 0.0; cum[t] = run; }
        for (int t = 0; t < T; ++t) for (int s = 0; s <= t; ++s) {
            double w = scale * exp(cum[t] - cum[s]), qk = 0, gv = 0;
            for (int d = 0; d < D; ++d) qk += qq(t, d) * kk(s, d);
            for (int e = 0; e < DV; ++e) gv += go(t, e) * vv(s, e);
            if (real(t)) for (int e = 0; e < DV; ++e) ro[((size_t)bh * T + t) * DV + e] += w * qk * vv(s, e);
            for (int d = 0; d < D; ++d) { rdq[((size_t)bh * T + t) * D + d] += w * gv * kk(s, d); if (real(s)) rdk[((size_t)bh * T + s) * D + d] += w * gv * qq(t, d); }
            if (real(s)) for (int e = 0; e < DV; ++e) rdv[((size_t)bh * T + s) * DV + e] += w * qk * go(t, e);
            // ∂o/∂G_t and ∂o/∂G_s of the weight exp(G_t − G_s): +M at t, −M at s.
            double m = w * qk * gv;
            dGr[t] += m; dGr[s] -= m;
        }
        double acc = 0;
        for (int t = T - 1; t >= 0; --t) { acc += dGr[t]; rdg[(size_t)bh * T + t] = real(t) ? acc : 0.0; }
    }
    double worst = 0;
    auto report = [&](const char* n, double mx, double d) {
        double rel = d / max(1.0, mx); worst = max(worst, rel);
        printf("  %-3s max|ref| %.3e  max diff %.3e  rel %.2e\n", n, mx, d, rel); };
    auto cmp = [&](const char* n, const std::vector<double>& ref, const std::vector<in_t>& got) {
        double mx = 0, d = 0;
        for (size_t i = 0; i < ref.size(); ++i) { double x = ldx(got[i]); mx = max(mx, fabs(ref[i])); d = max(d, fabs(ref[i] - x)); if (std::isnan(x)) d = 1e9; }
        report(n, mx, d); };
    auto cmpd = [&](const char* n, const std::vector<double>& ref, const std::vector<double>& got) {
        double mx = 0, d = 0;
        for (size_t i = 0; i < ref.size(); ++i) { mx = max(mx, fabs(ref[i])); d = max(d, fabs(ref[i] - got[i])); if (std::isnan(got[i])) d = 1e9; }
        report(n, mx, d); };
    printf("decay D=%d DV=%d IN_T=%d B=%d T=%d strength=%g scale=%g\n", D, DV, IN_T, B, T, strength, scale);
    cmp("o", ro, o); cmp("dq", rdq, dq); cmp("dk", rdk, dk); cmp("dv", rdv, dv); cmpd("dg", rdg, dg);
    printf("%s worst rel %.2e\n", worst < 2e-2 ? "OK" : "BAD", worst);
    return worst < 2e-2 ? 0 : 1;
}
