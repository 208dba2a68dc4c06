# Summarizes `ncu --import rep.ncu-rep --page source --print-source sass --csv` (one CSV section per kernel launch):
# per kernel, the warp-stall reasons' share of the samples and the opcodes' shares of samples and executed instructions
# (shares only: the CSV may repeat a launch's section, which counts every instruction alike).
import csv, collections, sys
kernels = collections.OrderedDict(); cur = None; header = None
for line in open(sys.argv[1]).read().split('\n'):
    if line.startswith('"Kernel Name"'):
        cur = line.split(',')[1].strip('"'); header = None; kernels.setdefault(cur, []); continue
    if not line.strip(): continue
    r = next(csv.reader([line]))
    if header is None: header = r; kernels[cur].append(('H', r)); continue
    kernels[cur].append(('R', r))
for k, rows in kernels.items():
    h = [r for t, r in rows if t == 'H'][0]
    i_src, i_s, i_ie = h.index('Source'), h.index('Warp Stall Sampling (All Samples)'), h.index('Instructions Executed')
    stalls = [c for c in h if c.startswith('stall_') and 'Not Issued' not in c]
    ts = ti = 0.0; by_s = collections.Counter(); by_i = collections.Counter(); st = collections.Counter(); integer = 0.0
    for t, r in rows:
        if t != 'R': continue
        s = float(r[i_s] or 0); ie = float(r[i_ie] or 0)
        toks = r[i_src].split()
        op = (toks[1] if toks and toks[0].startswith('@') and len(toks) > 1 else toks[0] if toks else '').split('.')[0]
        by_s[op] += s; by_i[op] += ie; ts += s; ti += ie
        if op in ('IMAD', 'LOP3', 'LEA', 'IADD3', 'VIADD', 'ISETP', 'SHF', 'PRMT', 'SEL', 'IABS', 'UIADD3', 'UIMAD', 'ULEA', 'ULOP3', 'USHF', 'UISETP', 'USEL'): integer += ie
        for c in stalls: st[c] += float(r[h.index(c)] or 0)
    print(f"{k}: integer ops {integer / ti * 100:.0f} % of the executed warp instructions")
    print("  stall reasons (share of samples): " + ", ".join(f"{c[6:]} {v / ts * 100:.0f} %" for c, v in st.most_common(8)))
    print("  opcodes (share of samples / of instructions): " + ", ".join(f"{o} {by_s[o] / ts * 100:.0f}/{by_i[o] / ti * 100:.0f}" for o, _ in by_s.most_common(14)))
