// CPU emulation of the multi-tensor AdamW kernels (multi_tensor_adamw.cu, see run.sh) against an fp64 evaluation of
// TorchSharp's AdamW with clip_grad_norm_'s clipping: three steps over tensors of odd sizes (one element, a chunk and
// a bit, several chunks), with and without weight decay, clipping on and off. Arguments: clip (0/1) max_norm.
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    const bool clip = atoi(argv[1]) != 0;
    const float maxNorm = (float)atof(argv[2]);
    // The optimizer's settings are fp64 (TorchSharp's options); the kernel gets them rounded to fp32, 1 − β from fp64.
    const double lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    const long long sizes[] = {1, CHUNK + 37, 3 * CHUNK - 5};
    const float decays[] = {0.f, 0.01f, 0.1f};
    const int nt = 3;
    std::mt19937 rng(clip ? 11 : 7);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<std::vector<float>> p(nt), g(nt), m(nt), v(nt);
    std::vector<std::vector<in_t>> low(nt);
    std::vector<std::vector<double>> rp(nt), rm(nt), rv(nt);
    std::vector<long long> table(nt * TSLOTS, 0);
    std::vector<int> chunks;
    for (int t = 0; t < nt; ++t) {
        long long n = sizes[t];
        p[t].resize(n); g[t].resize(n); m[t].assign(n, 0.f); v[t].assign(n, 0.f); low[t].assign(n, 0);
        for (auto& x : p[t]) x = nd(rng);
        rp[t].assign(p[t].begin(), p[t].end()); rm[t].assign(n, 0.0); rv[t].assign(n, 0.0);
        long long* row = &table[t * TSLOTS];
        row[TAB_PARAM] = (long long)p[t].data(); row[TAB_GRAD] = (long long)g[t].data();
        row[TAB_EXP_AVG] = (long long)m[t].data(); row[TAB_EXP_AVG_SQ] = (long long)v[t].data();
        row[TAB_LOW] = t == 1 && IN_T != 0 ? 0 : (long long)low[t].data();   // one tensor without a low-precision copy
        row[TAB_NUMEL] = n; row[TAB_DECAY] = __float_as_uint(decays[t]);
        for (long long c = 0; c * CHUNK < n; ++c) { chunks.push_back(t); chunks.push_back((int)c); }
    }
    const int nchunks = (int)chunks.size() / 2;
    std::vector<float> partial(nchunks, NAN);
    float sumsq = NAN;
    double worst = 0, normRel = 0;
    long long lowMismatches = 0;
    for (int step = 1; step <= 3; ++step) {
        for (int t = 0; t < nt; ++t) for (auto& x : g[t]) x = nd(rng) * (step == 2 ? 50.f : 0.5f);   // step 2 clips, the others may not
        const long long* tab = table.data(); const int* ch = chunks.data();
        if (clip) {
            launch(nchunks, 1, [&] { mt_grad_sumsq(tab, ch, partial.data()); });
            launch(1, 1, [&] { mt_grad_sumsq_finish(partial.data(), nchunks, &sumsq); });
        }
        const float stepSize = (float)(lr / (1 - pow(beta1, step))), invSqrtBc2 = (float)(1 / sqrt(1 - pow(beta2, step)));
        launch(nchunks, 1, [&] { mt_adamw(tab, ch, clip ? &sumsq : nullptr, maxNorm, (float)lr, (float)beta1, (float)beta2, (float)(1 - beta1),
                                          (float)(1 - beta2), (float)eps, stepSize, invSqrtBc2); });
        // fp64 reference: clip_grad_norm_ then TorchSharp's AdamW.
        double total = 0;
        for (int t = 0; t < nt; ++t) for (float x : g[t]) total += (double)x * x;
        if (clip) normRel = std::max(normRel, fabs(sumsq - total) / total);
        double coef = clip ? std::min(1.0, maxNorm / (sqrt(total) + 1e-6)) : 1.0;
        double bc1 = 1 - pow(beta1, step), bc2 = 1 - pow(beta2, step);
        for (int t = 0; t < nt; ++t)
            for (size_t i = 0; i < p[t].size(); ++i) {
                double gi = g[t][i] * coef;
                rp[t][i] *= 1 - lr * decays[t];
                rm[t][i] = beta1 * rm[t][i] + (1 - beta1) * gi;
                rv[t][i] = beta2 * rv[t][i] + (1 - beta2) * gi * gi;
                rp[t][i] -= lr / bc1 * rm[t][i] / (sqrt(rv[t][i]) / sqrt(bc2) + eps);
            }
        for (int t = 0; t < nt; ++t)
            for (size_t i = 0; i < p[t].size(); ++i) {
                worst = std::max({worst, fabs(p[t][i] - rp[t][i]) / std::max(1.0, fabs(rp[t][i])), fabs(m[t][i] - rm[t][i]) / std::max(1.0, fabs(rm[t][i])),
                                  fabs(v[t][i] - rv[t][i]) / std::max(1e-6, fabs(rv[t][i]))});
                const in_t expected = stx(p[t][i]);
                if (table[t * TSLOTS + TAB_LOW] != 0 && memcmp(&low[t][i], &expected, sizeof(in_t)) != 0) ++lowMismatches;
            }
    }
    // fp32 arithmetic against fp64 over three steps (errors relative to max(1, |ref|), v's to |v|); the low copy must be
    // exactly the updated master rounded to in_t.
    bool ok = worst < 1e-5 && lowMismatches == 0 && normRel < 1e-5;
    printf("%s params/moments %.2e  low copy mismatches %lld  norm² rel %.2e\n", ok ? "OK  " : "FAIL", worst, lowMismatches, normRel);
    return ok ? 0 : 1;
}
