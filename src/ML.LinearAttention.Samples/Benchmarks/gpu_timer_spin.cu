// GpuTimer's spin kernel: holds the legacy default stream for the given nanoseconds (reading %globaltimer) while the
// host enqueues the work to time, so the timed runs follow each other without host gaps. Compiled by NVRTC alone.
extern "C" __global__ void spin(long long nanoseconds) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while ((long long)(now - start) < nanoseconds);
}
