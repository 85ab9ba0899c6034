/* Is this machine slowed from outside, and how? Alternates, for N seconds:
 *   mm      a 256x256x256 float matrix product (768 KiB of data: lives in
 *           L2/L3, so it feels another tenant's cache and memory traffic),
 *   fma     8 independent AVX2 FMA chains in registers (no memory at all:
 *           feels only the core's clock and a busy SMT sibling),
 *   scalar  a dependent integer multiply-add chain (registers only),
 * and prints one line per round: "t_ms mm_ms fma_ms scalar_ms".
 * Built and summarised by scripts/probe-contention. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 256
static float A[N * N], B[N * N], C[N * N];

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void mm(void) {
    for (int i = 0; i < N; i++) {
        float *c = C + i * N;
        for (int j = 0; j < N; j++) c[j] = 0;
        for (int k = 0; k < N; k++) {
            float a = A[i * N + k];
            const float *b = B + k * N;
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

__attribute__((target("avx2,fma"))) static float fma_chains(int iters) {
    __m256 m = _mm256_set1_ps(0.9999f), k = _mm256_set1_ps(0.0001f);
    __m256 a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_set1_ps(1.0f);
    for (int i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(a[j], m, k);
    __m256 s = a[0];
    for (int j = 1; j < 8; j++) s = _mm256_add_ps(s, a[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

static unsigned scalar_chain(int iters) {
    volatile unsigned seed = 1;
    unsigned y = seed;
    for (int i = 0; i < iters; i++) y = y * 1103515245u + 12345u;
    return y;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 30;
    for (int i = 0; i < N * N; i++) {
        A[i] = (float)(i % 7);
        B[i] = (float)(i % 5);
    }
    double t0 = now_ms();
    double sink = 0;
    while (now_ms() - t0 < secs * 1e3) {
        double a = now_ms();
        mm();
        sink += C[N + 1];
        double b = now_ms();
        sink += fma_chains(20000);
        double c = now_ms();
        sink += scalar_chain(200000);
        double d = now_ms();
        printf("%.3f %.4f %.4f %.4f\n", a - t0, b - a, c - b, d - c);
    }
    fprintf(stderr, "(checksum %g)\n", sink);
    return 0;
}
