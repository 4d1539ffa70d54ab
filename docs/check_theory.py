"""Recompute every reference number quoted in docs/theory.md (numpy, scipy, mpmath; about 2.5 CPU-minutes).

Run from a checkout: ``PYTHONPATH=. python docs/check_theory.py``. Each line prints the quantity, the
value computed here and, where the document quotes one, the quoted value.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
from scipy import integrate, optimize, stats


def show(name, value, quoted=None):
    q = "" if quoted is None else f"   (quoted: {quoted})"
    print(f"{name:<62s} {value!s:<24s}{q}")


def distances():
    print("# distances-chi-law, distances-relative-spread")
    show("uniform(0,1): rel. std of D * sqrt(d) = 3 sqrt(7/180)", f"{3 * math.sqrt(7 / 180):.5f}", "0.5916")
    x = 1e4
    series = math.sqrt(x) * (1 - 1 / (8 * x) + 1 / (128 * x**2) + 5 / (1024 * x**3) - 21 / (32768 * x**4))
    mp.mp.dps = 40
    ex = mp.exp(mp.loggamma(x + mp.mpf(1) / 2) - mp.loggamma(x))
    show("Gamma(x+1/2)/Gamma(x) series, rel. error at x = 1e4", f"{float(abs(series / ex - 1)):.1e}")
    # Cauchy: |x - y|/d -> sqrt(8/pi)/|Z|: IQR/median of 1/|Z|
    q = lambda p: 1 / stats.norm.ppf((1 + p) / 2)
    iqr_med = (q(0.25) - q(0.75)) / q(0.5)
    show("Cauchy: IQR/median of the distance (limit)", f"{iqr_med:.4f}", "1.530")
    show("uniform(0,1): limit angle arccos(3/4) (degrees)", f"{math.degrees(math.acos(0.75)):.2f}", "41.4")


def effective_rank():
    print("# distances-effective-rank, distances-mlp-init")
    dims = np.array([10, 32, 100, 316, 1000, 3162, 10000, 31623, 100000, 316228, 1000000])
    for a in (0.0, 0.5, 1.0, 2.0):
        rel = []
        for d in dims:
            lam = np.arange(1, d + 1, dtype=np.float64) ** -a
            rel.append(math.sqrt(2 * np.sum(lam**2) / np.sum(lam) ** 2) / 2)  # rel. std of D
        show(
            f"lambda_i = i^-{a}: fitted slope of rel. std of D, d = 10..1e6",
            f"{np.polyfit(np.log(dims), np.log(rel), 1)[0]:.3f}",
        )
    # He-initialised 784-h-h-10 MLP, the widest that fits in d (as the gallery does)
    rows = []
    for d_max in (1000, 3162, 10000, 31623, 100000, 316228, 1000000):
        h = max(h for h in range(1, 2000) if h * h + 796 * h + 10 <= d_max)
        d = h * h + 796 * h + 10
        d_eff = (4 * h + 20) ** 2 / (4 * h / 784 + 4 + 40 / h)
        rows.append((d, math.sqrt(2 / d_eff) / 2))
    x, y = np.log([r[0] for r in rows]), np.log([r[1] for r in rows])
    show("He MLP 784-h-h-10: fitted slope of rel. std of D, d = 1e3..1e6", f"{np.polyfit(x, y, 1)[0]:.3f}")


def iid_2x2():
    print("# goe-normalisation")

    def p_pd(var_b):
        # P(a > 0, c > 0, a c > b^2), a, c ~ N(0, 1), b ~ N(0, var_b): in polar coordinates a = r cos t,
        # c = r sin t, P = (1/2pi) int_0^{pi/2} dt int_0^inf r e^{-r^2/2} (2 Phi(r sqrt(sin t cos t / var_b)) - 1) dr
        def inner(t):
            k = math.sqrt(math.sin(t) * math.cos(t) / var_b)
            return integrate.quad(
                lambda r: r * math.exp(-r * r / 2) * (2 * stats.norm.cdf(k * r) - 1),
                0,
                np.inf,
                epsabs=1e-14,
                epsrel=1e-13,
            )[0]

        return integrate.quad(inner, 0, math.pi / 2, epsabs=1e-14, epsrel=1e-13)[0] / (2 * math.pi)

    show("i.i.d. symmetric 2x2 (all variances 1): P(pos. def.)", f"{p_pd(1.0):.8f}", "0.11585; tests said 0.1157")
    show(
        "GOE 2x2 (off-diagonal variance 1/2 of the diagonal's)",
        f"{p_pd(0.5):.12f}",
        f"(2 - sqrt 2)/4 = {(2 - math.sqrt(2)) / 4:.12f}",
    )

    # the inner integral in closed form: int_0^inf r e^{-r^2/2} (2 Phi(k r) - 1) dr = k / sqrt(1 + k^2)
    def integrand(t):
        k = math.sqrt(math.sin(t) * math.cos(t))
        return k / math.sqrt(1 + k * k)

    v = integrate.quad(integrand, 0, math.pi / 2, epsabs=1e-15)[0] / (2 * math.pi)
    show("i.i.d. 2x2, one-dimensional form (1/2pi) int k/sqrt(1+k^2) dt", f"{v:.10f}")


def goe_exact():
    print("# goe-positive-definite-exact, goe-large-deviation")
    from sim import rare
    from sim.theory import rmt as th

    theta = math.log(3) / 4
    show("theta = ln(3)/4", f"{theta:.6f}", "0.27465")
    for n in range(1, 9):
        lp = rare.log_p_positive_definite_exact(n)
        show(
            f"N = {n}: P, -ln P / N^2",
            f"{math.exp(lp):.15g}  {-lp / n**2:.4f}",
            f"{th.EXACT_P_POSITIVE_DEFINITE[n]:.15g}",
        )
    show("N = 3: (pi - 2 sqrt 2)/(4 pi)", f"{(math.pi - 2 * math.sqrt(2)) / (4 * math.pi):.15g}")
    ns = np.arange(10, 51)
    r = np.array([-rare.log_p_positive_definite_exact(int(n)) - theta * n * n for n in ns])
    slope, icpt = np.polyfit(ns, r, 1)
    resid = r - (slope * ns + icpt)
    show("-ln P - theta N^2 over N = 10..50: slope, intercept", f"{slope:.4f} {icpt:.3f}", "slope ~0.38")
    show("   max |residual of the line|", f"{np.abs(resid).max():.3f}")
    for n in (20, 48, 50):
        show(f"   ln P at N = {n}", f"{rare.log_p_positive_definite_exact(n):.2f}")
    c2 = np.polyfit(ns, -np.array([rare.log_p_positive_definite_exact(int(n)) for n in ns]), 2)
    show("quadratic fit of -ln P over N = 10..50: theta", f"{c2[0]:.4f}")


def index_variance(rng):
    print("# goe-index-variance")
    # Dumitriu-Edelman tridiagonal GOE (diag N(0,2), off-diag^2 ~ chi^2_{n-1-k}); index = # negative
    # LDL^T pivots (Sylvester). O(n) per matrix, vectorised over samples.
    out = []
    for n, reps in ((16, 400_000), (64, 400_000), (256, 200_000), (1024, 100_000)):
        a = rng.normal(0.0, math.sqrt(2.0), (n, reps))
        neg = np.zeros(reps, np.int64)
        d = a[0].copy()
        neg += d < 0
        for k in range(1, n):
            c = rng.chisquare(n - k, reps)  # b_{k-1}^2 ~ chi^2_{n-1-(k-1)}
            d = a[k] - c / d
            neg += d < 0
        var = neg.var(ddof=1)
        se = var * math.sqrt(2 / reps) * 1.0
        out.append((n, var, se))
        show(f"N = {n}: Var(index) - ln N / pi^2", f"{var - math.log(n) / math.pi**2:.4f} +- {se:.4f}", "0.24")
    c = (math.log(8) + np.euler_gamma + 1 - math.pi**2 / 8) / math.pi**2
    show("heuristic (ln 8 + gamma + 1 - pi^2/8)/pi^2", f"{c:.4f}")


def semicircle():
    print("# goe-semicircle")
    from sim.theory import rmt as th

    show("F(-0.4) (negative fraction of GOE + 0.4 I)", f"{float(th.semicircle_cdf(-0.4)):.4f}", "0.3735")
    # 1/N term: second moment of the correction density is +1 (E tr H^2 / n^2 = 1 + 1/n)
    m2 = 2.0 - integrate.quad(lambda x: x * x / math.sqrt(4 - x * x), -2, 2)[0] / (2 * math.pi)
    show("second moment of the 1/N density term", f"{m2:.6f}", "1")


def pspin():
    print("# pspin")
    from sim.theory import landscapes as T

    for p in (3, 4):
        show(f"p = {p}: E_inf, E_0", f"{T.pspin_threshold(p):.5f} {T.pspin_ground_state(p):.5f}")
    # Kac-Rice at n = 3 (sphere of radius sqrt 3): E# = area/(2 pi p) E|det(sqrt(p(p-1)/3) M - p u I)|
    rng = np.random.default_rng(1)
    p, n, reps = 3, 3, 4_000_000
    g = rng.normal(size=(reps, 3))
    m11, m22 = math.sqrt(2) * g[:, 0], math.sqrt(2) * g[:, 1]
    m12 = g[:, 2]
    u = rng.normal(0, 1 / math.sqrt(n), reps)
    s = math.sqrt(p * (p - 1) / n)
    det = (s * m11 - p * u) * (s * m22 - p * u) - (s * m12) ** 2
    est = 4 * math.pi * n / (2 * math.pi * p) * np.abs(det)
    show(
        "p = 3, n = 3: E #crit by Kac-Rice Monte Carlo",
        f"{est.mean():.3f} +- {est.std() / math.sqrt(reps):.3f}",
        f"{T.pspin_expected_critical_count(3, 3):.3f}",
    )
    # n = 2: circle of radius sqrt 2, one tangent direction (gradient density 1/sqrt(2 pi p) at 0), 1 x 1 GOE
    # (variance 2): E|sqrt(p(p-1)/2) M - p u| = E|N(0, p(p-1) + p^2/2)|, in closed form
    e2 = 2 * math.pi * math.sqrt(2) / math.sqrt(2 * math.pi * p) * math.sqrt(2 * (p * (p - 1) + p * p / 2) / math.pi)
    show("p = 3, n = 2: E #crit by Kac-Rice (closed form)", f"{e2:.6f}", f"2 sqrt 7 = {2 * math.sqrt(7):.6f}")


def grf():
    print("# grf-bray-dean")
    for name, f0, f1, f2 in (("exp(-r)", 1, -1, 1), ("1/(1+r)", 1, -1, 2)):
        ours = 2 * f0 * math.sqrt(f2) / f1
        other = -(f0 * f2 + f1 * f1) / (f1 * math.sqrt(f2))
        show(f"eps_c for f = {name}: 2 f sqrt(f'')/f' | -(f f''+f'^2)/(f' sqrt f'')", f"{ours:.4f} | {other:.4f}")
    show("slope of F at 0 (index fraction per unit energy)", f"{1 / math.pi:.4f}")


def learning():
    print("# eigenlearning, learning-curve-exponents")

    # tail=(a, b): modes i > len(lam) with lambda_i = i^-a, v_i^2 = i^-b are added to first order in
    # lambda_i/kappa (they are far below kappa): without them a slowly decaying target (b near 1) is
    # truncated and its fitted exponent is too steep.
    def kappa(lam, n, delta, tail=None):
        t_lam = 0.0 if tail is None else (len(lam) + 0.5) ** (1 - tail[0]) / (tail[0] - 1)
        f = lambda k: np.sum(lam / (lam + k)) + t_lam / k + delta / k - n
        lo, hi = 1e-300, 1e6
        return optimize.brentq(lambda t: f(math.exp(t)), math.log(lo), math.log(hi), xtol=1e-14)

    def excess(lam, v2, n, delta, sigma2=0.0, tail=None):
        k = math.exp(kappa(lam, n, delta, tail))
        L = lam / (lam + k)
        e0 = n / (n - np.sum(L * L))
        t_v2 = 0.0 if tail is None else (len(lam) + 0.5) ** (1 - tail[1]) / (tail[1] - 1)
        return e0 * (np.sum((1 - L) ** 2 * v2) + t_v2 + sigma2) - sigma2, k, e0

    P = 200_000
    i = np.arange(1, P + 1, dtype=np.float64)
    for a, b in ((1.5, 2.0), (1.5, 5.0), (2.0, 3.0), (1.5, 1.095)):
        lam, v2 = i**-a, i**-b
        ns = np.array([100, 200, 400, 800, 1600])
        errs = [excess(lam, v2, int(n), 1e-14 * n, tail=(a, b))[0] for n in ns]
        slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
        show(
            f"alpha = {a}, beta = {b}: slope of excess risk (ridgeless)",
            f"{slope:.3f}",
            f"-min(beta-1, 2 alpha) = {-min(b - 1, 2 * a):.3f}",
        )
    # isotropic check against Hastie et al.: P modes of lambda = 1, ridgeless
    n, r2, s2 = 200, 1.0, 1.0
    for Pm in (100, 400):
        lam = np.ones(Pm)
        v2 = np.full(Pm, r2 / Pm)
        ex = excess(lam, v2, n, 1e-12, s2)[0]
        g = Pm / n
        hmrt = s2 * g / (1 - g) if g < 1 else r2 * (1 - 1 / g) + s2 / (g - 1)
        show(f"isotropic P = {Pm}, n = {n}: eigenlearning excess vs HMRT", f"{ex:.4f} vs {hmrt:.4f}")
    print("# double-descent")
    for Pm in (100, 400):
        fin = s2 * Pm / (n - Pm - 1) if Pm < n - 1 else r2 * (1 - n / Pm) + s2 * n / (Pm - n - 1)
        show(f"finite-n Gaussian risk, n = 200, P = {Pm}", f"{fin:.4f}", "1.0101" if Pm == 100 else "1.5050")
    # a quick simulation of the finite-n formulas (30 seeds)
    rng = np.random.default_rng(0)
    for Pm in (100, 400):
        risks = []
        for _ in range(200):
            X = rng.normal(size=(n, Pm))
            beta = rng.normal(size=Pm)
            beta *= math.sqrt(r2) / np.linalg.norm(beta)
            y = X @ beta + rng.normal(size=n) * math.sqrt(s2)
            bh = np.linalg.lstsq(X, y, rcond=None)[0]  # the minimum-norm solution when P > n
            risks.append(np.sum((bh - beta) ** 2))
        show(f"   simulated, 200 seeds, P = {Pm}", f"{np.mean(risks):.4f} +- {np.std(risks) / math.sqrt(200):.4f}")


def noise_scale():
    print("# gradient-noise-scale")
    d, F = 100, 100
    for B in (1, 10, 101, 1010):
        S = math.log(F) / math.log(1 + B / (d + 1))
        show(f"d = 100, F = 100, B = {B}: steps", f"{S:.2f} -> {math.ceil(S)}")
    rng = np.random.default_rng(0)
    d, reps = 20, 400_000
    delta = rng.normal(size=d)
    x = rng.normal(size=(reps, d))
    g = x * (x @ delta)[:, None]  # per-sample gradient, noiseless, H = I
    G = delta
    trS = np.sum(g.var(axis=0, ddof=1))
    show("isotropic noiseless d = 20: B_simple = B_noise (Monte Carlo)", f"{trS / (G @ G):.3f}", "d + 1 = 21")


def kpm():
    print("# eigenvalue-counts-kpm")
    # Chebyshev coefficients of the step 1[x < t] on [-1, 1], Jackson-damped: check against a direct count
    rng = np.random.default_rng(0)
    lam = np.sort(rng.uniform(-1, 1, 2000))
    t = 0.1
    M = 200
    k = np.arange(M + 1)
    phi = math.acos(t)
    c = np.where(k == 0, 1 - phi / math.pi, -2 * np.sin(k * phi) / (math.pi * np.maximum(k, 1)))
    a = math.pi / (M + 2)
    g = ((M + 2 - k) * np.cos(k * a) + np.sin(k * a) / math.tan(a)) / (M + 2)
    T = np.polynomial.chebyshev.chebvander(lam, M)
    est = np.mean(T @ (g * c))
    show(
        f"uniform spectrum, M = {M}: Jackson-KPM fraction below 0.1 (exact moments)",
        f"{est:.4f}",
        f"{np.mean(lam < t):.4f}",
    )


def lazy():
    print("# lazy-training")
    # one-hidden-layer ReLU network f(x) = c sum_j a_j relu(w_j . x / sqrt(d)), all weights N(0, 1);
    # NTK: c = 1/sqrt(w), learning rate 0.5; mean-field: c = 1/w, learning rate 0.5 w. Full-batch GD on
    # (1/2n) sum (f - y)^2, d = 10, n = 32, y = sin(2 u . x), 1500 steps; networks A, B differ only in init.
    d, n, steps = 10, 32, 1500
    data = np.random.default_rng(123)
    x = data.normal(size=(n, d))
    u = data.normal(size=d)
    y = np.sin(2 * x @ (u / np.linalg.norm(u)))

    def train(width, seed, param):
        rng = np.random.default_rng(seed)
        w, a = rng.normal(size=(width, d)), rng.normal(size=width)
        c, eta = (1 / math.sqrt(width), 0.5) if param == "ntk" else (1 / width, 0.5 * width)
        th0 = np.concatenate([w.ravel(), a])
        for _ in range(steps):
            pre = x @ w.T / math.sqrt(d)
            h = np.maximum(pre, 0)
            r = (c * h @ a - y) / n
            ga = c * h.T @ r
            gw = c * ((r[:, None] * (pre > 0)) * a[None, :]).T @ x / math.sqrt(d)
            a, w = a - eta * ga, w - eta * gw
        return th0, np.concatenate([w.ravel(), a])

    for param in ("ntk", "mf"):
        for width in (64, 256, 1024, 4096):
            t0, t = train(width, 0, param)
            _, s = train(width, 1, param)
            rel = np.linalg.norm(t - t0) / np.linalg.norm(t0)
            cos = t0 @ t / (np.linalg.norm(t0) * np.linalg.norm(t))
            ab = np.linalg.norm(t - s) / np.linalg.norm(t0)
            show(f"{param}, width {width}: |dtheta|/|theta0|, cos, |A - B|/|theta0|", f"{rel:.4f} {cos:.4f} {ab:.3f}")


if __name__ == "__main__":
    rng = np.random.default_rng(20261202)
    distances()
    effective_rank()
    iid_2x2()
    semicircle()
    goe_exact()
    pspin()
    grf()
    learning()
    noise_scale()
    kpm()
    lazy()
    index_variance(rng)
