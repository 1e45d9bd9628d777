"""Probe of what a validator can measure about each update (design data for the incentive rule, issue 14).

Usage: python bench/update_probe.py MODEL iid|ALPHA ROUNDS SIZES [EPOCHS]
  e.g. python bench/update_probe.py small_cnn iid 6 6000,8000,10000,12000,14000 2

Per round and candidate (honest workers by size, shuffled labels, free rider, sign flip, x10 and x2
scaling, permuted units, perturbed copy, extrapolators of the last global step): validation-loss gain
of the full and half step, the same with the previous global step projected out (gT), cosines with the
validation gradient (cosG) and with a reference update trained on the validation set (cosR), norms.
"""

import sys, math, time, torch, itertools
from refiner.fl.data import load_mnist, split_mnist, shuffle_labels
from refiner.fl.models import resolve_model, initial_state
from refiner.fl.training import TrainingConfig, train_local
from refiner.fl.evaluation import evaluate_many, evaluate
from refiner.fl.aggregation import fedavg
torch.set_num_threads(1)
model = sys.argv[1]; alpha = None if sys.argv[2]=='iid' else float(sys.argv[2]); rounds=int(sys.argv[3])
sizes = [int(s) for s in sys.argv[4].split(',')]
epochs = int(sys.argv[5]) if len(sys.argv)>5 else 1
train, test = load_mnist()
val, shards = split_mnist(train, sizes+[sizes[0]], 2000 if model!='logistic' else 1000, alpha, 0)
attack_shard = shards[-1]; shards = shards[:-1]
mf = resolve_model(model)
w = initial_state(mf, 0); prev = None
def flat(s): return torch.cat([v.double().flatten() for k,v in sorted(s.items())])
def add(g, d, t=1.0): return {k: (g[k].double()+t*d[k]).float() for k in g}
def delta(a, g): return {k: a[k].double()-g[k].double() for k in g}
def proj_out(d, s):
    out={}
    for k in d:
        ss=(s[k]*s[k]).sum()
        out[k] = d[k] - (d[k]*s[k]).sum()/ss*s[k] if ss>0 else d[k]
    return out
def dot(a,b): return sum(float((a[k]*b[k]).sum()) for k in a)
def nrm(a): return math.sqrt(dot(a,a))
def cos(a,b):
    na, nb = nrm(a), nrm(b)
    return dot(a,b)/(na*nb) if na>0 and nb>0 else 0.0
def grad_ref(g):
    m = mf(); m.load_state_dict(g); m.eval()
    m.zero_grad()
    tot = 0
    for st in range(0, len(val), 125):
        l = torch.nn.functional.cross_entropy(m(val.x[st:st+125]), val.y[st:st+125], reduction='sum'); l.backward(); 
    return {k: -p.grad.double()/len(val) for k,p in m.named_parameters()}
def permute(s):
    if model=='logistic': return s
    g = torch.Generator().manual_seed(5)
    p1 = torch.randperm(16, generator=g); p2 = torch.randperm(32, generator=g)
    o = dict(s)
    o['conv1.weight']=s['conv1.weight'][p1]; o['conv1.bias']=s['conv1.bias'][p1]
    o['conv2.weight']=s['conv2.weight'][p2][:,p1]; o['conv2.bias']=s['conv2.bias'][p2]
    fw = s['fc.weight'].reshape(10,32,49)[:,p2].reshape(10,-1); o['fc.weight']=fw.contiguous()
    return {k:v.contiguous() for k,v in o.items()}
for r in range(1, rounds+1):
    t0=time.time()
    cfg = lambda i: TrainingConfig(epochs=epochs, lr=0.1, seed=i*7+r)
    locs = [train_local(mf, w, sh, cfg(i)) for i, sh in enumerate(shards)]
    shuf = train_local(mf, w, shuffle_labels(attack_shard, r), cfg(99))
    ref_tr = train_local(mf, w, val, cfg(98))
    agg = fedavg(locs, sizes)
    rg = grad_ref(w)
    rt = delta(ref_tr, w)
    step = delta(w, prev) if prev is not None else None
    cands = {f'h{n//1000 if n>=1000 else n}': l for n,l in zip(sizes, locs)}
    cands['shuf'] = shuf
    cands['free'] = w
    d0 = delta(locs[0], w)
    cands['flip'] = add(w, d0, -1.0)
    cands['x10'] = add(w, d0, 10.0)
    cands['x2'] = add(w, d0, 2.0)
    cands['perm'] = permute(locs[-1])
    g = torch.Generator().manual_seed(r)
    cands['pcopy'] = add(w, {k: d0[k] + 0.3*d0[k].std()*torch.randn(d0[k].shape, generator=g, dtype=torch.float64) for k in d0})
    if step is not None:
        cands['ext1'] = add(w, step, 1.0); cands['ext2'] = add(w, step, 2.0)
    names = list(cands)
    deltas = {n: delta(cands[n], w) for n in names}
    tild = {n: proj_out(deltas[n], step) if step is not None else deltas[n] for n in names}
    evs = []
    states = [w, agg] + [cands[n] for n in names] + [add(w, deltas[n], 0.5) for n in names] + [add(w, tild[n], 1.0) for n in names] + [add(w, tild[n], 0.5) for n in names]
    ev = [e.loss for e in evaluate_many(mf, states, val)]
    Lg, La = ev[0], ev[1]; k=len(names)
    acc = evaluate(mf, agg, test).accuracy
    print(f"round {r}: L(w_g)={Lg:.4f} L(agg)={La:.4f} test acc {acc:.4f} ({time.time()-t0:.0f}s)")
    print(f"  {'name':6} {'gain1':>8} {'gain.5':>8} {'gT1':>8} {'gT.5':>8} {'cosG':>7} {'cosGT':>7} {'cosR':>7} {'cosRT':>7} {'norm':>7} {'normT':>7} {'dotG':>9} {'dotGT':>9}")
    for j,n in enumerate(names):
        print(f"  {n:6} {Lg-ev[2+j]:8.4f} {Lg-ev[2+k+j]:8.4f} {Lg-ev[2+2*k+j]:8.4f} {Lg-ev[2+3*k+j]:8.4f} {cos(deltas[n],rg):7.3f} {cos(tild[n],rg):7.3f} {cos(deltas[n],rt):7.3f} {cos(tild[n],rt):7.3f} {nrm(deltas[n]):7.3f} {nrm(tild[n]):7.3f} {dot(deltas[n],rg):9.5f} {dot(tild[n],rg):9.5f}")
    hn = [n for n in names if n.startswith('h')]
    pc = [cos(tild[a],tild[b]) for a,b in itertools.combinations(hn,2)]
    print(f"  honest pairwise cos(tilde): min {min(pc):.3f} max {max(pc):.3f}; pcopy vs h0 {cos(tild['pcopy'], tild[hn[0]]):.3f}")
    prev, w = w, agg
