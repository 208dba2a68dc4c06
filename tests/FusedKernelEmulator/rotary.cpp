// CPU emulation of the fused rotary kernel (rotary.cu, see run.sh) against an fp64 evaluation on the same inputs:
// y = (x₁cos − x₂sin, x₂cos + x₁sin) per row and dx = (dy₁cos + dy₂sin, dy₂cos − dy₁sin), x read through the head
// split's strides ([B, T, H, D] memory seen as [B, H, T, D]); dx written back in that layout. Arguments: B H T D.
#define main bidirectional_main
#include "emulator.cpp"
#undef main

int main(int argc, char** argv) {
    const long long B = atoll(argv[1]), H = atoll(argv[2]), T = atoll(argv[3]);
    const int Dh = atoi(argv[4]), half = Dh / 2;
    std::mt19937 rng((unsigned)(B * 131 + H * 17 + T * 7 + Dh));
    std::normal_distribution<float> nd(0.f, 1.f);
    const size_t n = (size_t)B * H * T * Dh;
    std::vector<in_t> x(n), dy(n), y(n), dx(n);
    for (auto& e : x) e = stx(nd(rng) * 2.f);
    for (auto& e : dy) e = stx(nd(rng));
    // Tables as Rotary.HalfSplitTables builds them (fp32 angles): c = cos | cos, s = −sin | sin.
    std::vector<float> c((size_t)T * Dh), s((size_t)T * Dh);
    for (long long t = 0; t < T; ++t)
        for (int i = 0; i < half; ++i) {
            const float inv = expf((float)(2 * i) * (-logf(10000.f) / (float)Dh)), a = (float)t * inv;
            c[t * Dh + i] = c[t * Dh + half + i] = cosf(a);
            s[t * Dh + i] = -sinf(a); s[t * Dh + half + i] = sinf(a);
        }
    // x in [B, T, H, D] memory: strides b = T·H·D, h = D, t = H·D; dy contiguous [B, H, T, D].
    const long long rows = B * H * T;
    const int blocks = (int)((rows + 7) / 8);
    launch(blocks, 1, [&] { rotary_half_split(x.data(), c.data(), s.data(), y.data(), rows, H, T, Dh, T * H * Dh, Dh, H * Dh, H * T * Dh, T * Dh, Dh, 0); });
    launch(blocks, 1, [&] { rotary_half_split(dy.data(), c.data(), s.data(), dx.data(), rows, H, T, Dh, H * T * Dh, T * Dh, Dh, T * H * Dh, Dh, H * Dh, 1); });
    double errY = 0, errDx = 0;
    for (long long b = 0; b < B; ++b)
        for (long long h = 0; h < H; ++h)
            for (long long t = 0; t < T; ++t)
                for (int i = 0; i < Dh; ++i) {
                    const int p = i < half ? i + half : i - half;
                    const double xi = ldx(x[((b * T + t) * H + h) * Dh + i]), xp = ldx(x[((b * T + t) * H + h) * Dh + p]);
                    const long long o = ((b * H + h) * T + t) * Dh;
                    const double yRef = xi * c[t * Dh + i] + xp * s[t * Dh + i];
                    const double dRef = (double)ldx(dy[o + i]) * c[t * Dh + i] + (double)ldx(dy[o + p]) * s[t * Dh + p];
                    errY = std::max(errY, fabs(ldx(y[o + i]) - yRef) / std::max(1.0, fabs(yRef)));
                    errDx = std::max(errDx, fabs(ldx(dx[((b * T + t) * H + h) * Dh + i]) - dRef) / std::max(1.0, fabs(dRef)));
                }
    // fp32 arithmetic, one rounding to in_t: bf16 ≈ 4e-3 relative, fp16 ≈ 5e-4, fp32 a few ulps.
    const double bound = IN_T == 1 ? 8e-3 : IN_T == 2 ? 2e-3 : 1e-6;
    bool ok = errY < bound && errDx < bound;
    printf("%s y %.2e dx %.2e\n", ok ? "OK  " : "FAIL", errY, errDx);
    return ok ? 0 : 1;
}
