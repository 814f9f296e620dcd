/* Compiled inner loops of the Lagrangian fast path (tree DP, min-marginals, repair/swap).
 *
 * Loaded with ctypes by solvers/backends/native.py; every function mirrors a numpy routine in
 * treedp.py / localsearch.py operation for operation (same additions in the same order, first
 * index on ties), so with -ffp-contract=off the results are bit-identical to the numpy path.
 * Arrays are C-contiguous: doubles, and int64 indices.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ABI_VERSION 3
#define EPS 1e-12

int bb_abi(void) { return ABI_VERSION; }

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* TreeDP.minimise_priced: acc[v][m][i] = (loss + Σ_r mu[m][r]·cost[r]) + extra, laid out
 * (n, M, K); up (n, K, K) = [x_v, x_parent]. Edges (child[e], par[e]) in upward order; roots
 * add their minimum to value (M); choices come out as (M, n). Rows whose loss is +inf (padding,
 * fixed-away choices) are +inf for every price vector: as a child they only add +inf terms to
 * a minimum and are skipped, as a parent they stay +inf (so a parent with few live rows only
 * gets those). The same sums and minima as the numpy code, so equal results. */
VECTOR_CLONES
void bb_tree_minimise(int64_t n, int64_t K, int64_t M, int64_t R, const double *loss,
                      const double *extra, const double *cost, const double *mu,
                      const double *up, int64_t ne, const int64_t *child, const int64_t *par,
                      int64_t nr, const int64_t *roots, double *value, int64_t *choice) {
    double *acc = malloc(sizeof(double) * (size_t)(n * M * K));
    double *msg = malloc(sizeof(double) * (size_t)K);
    int64_t *live = malloc(sizeof(int64_t) * (size_t)(n * K)), *count = calloc((size_t)n, 8);
    for (int64_t v = 0; v < n; v++) {
        for (int64_t i = 0; i < K; i++)
            if (loss[v * K + i] != INFINITY) live[v * K + count[v]++] = i;
        for (int64_t m = 0; m < M; m++) {
            double *row = acc + (v * M + m) * K;
            for (int64_t i = 0; i < K; i++) {
                const int64_t vi = v * K + i;
                if (loss[vi] == INFINITY) {
                    row[i] = INFINITY;
                    continue;
                }
                double t = 0.0;
                for (int64_t r = 0; r < R; r++) {
                    const double x = mu[m * R + r] * cost[r * n * K + vi];
                    t = r ? t + x : x;
                }
                row[i] = (R ? loss[vi] + t : loss[vi]) + extra[vi];
            }
        }
    }
    for (int64_t e = 0; e < ne; e++) {
        const int64_t v = child[e], p = par[e];
        const double *uv = up + v * K * K;
        const int64_t *lv = live + v * K, *lp = live + p * K;
        if (2 * count[p] < K) { /* a sparse parent (fixing left it few choices): only those */
            for (int64_t m = 0; m < M; m++) {
                const double *av = acc + (v * M + m) * K;
                double *ap = acc + (p * M + m) * K;
                for (int64_t t = 0; t < count[p]; t++) {
                    const int64_t j = lp[t];
                    double best = INFINITY;
                    for (int64_t s = 0; s < count[v]; s++) {
                        const double x = av[lv[s]] + uv[lv[s] * K + j];
                        best = x < best ? x : best;
                    }
                    ap[j] += best;
                }
            }
            continue;
        }
        for (int64_t m = 0; m < M; m++) {
            const double *av = acc + (v * M + m) * K;
            double *ap = acc + (p * M + m) * K;
            for (int64_t j = 0; j < K; j++) msg[j] = INFINITY;
            for (int64_t s = 0; s < count[v]; s++) {
                const int64_t i = lv[s];
                const double a = av[i], *ui = uv + i * K;
                for (int64_t j = 0; j < K; j++) {
                    const double x = a + ui[j];
                    msg[j] = x < msg[j] ? x : msg[j];
                }
            }
            for (int64_t j = 0; j < K; j++) ap[j] += msg[j];
        }
    }
    free(msg);
    for (int64_t r = 0; r < nr; r++) {
        const int64_t v = roots[r];
        for (int64_t m = 0; m < M; m++) { /* first least, as argmin (dead rows are +inf) */
            const double *av = acc + (v * M + m) * K;
            double best = INFINITY;
            int64_t at = 0;
            for (int64_t s = 0; s < count[v]; s++)
                if (av[live[v * K + s]] < best) best = av[live[v * K + s]], at = live[v * K + s];
            choice[m * n + v] = at;
            value[m] += best;
        }
    }
    for (int64_t e = ne - 1; e >= 0; e--) { /* downward: parents before children */
        const int64_t v = child[e], p = par[e];
        const double *uv = up + v * K * K;
        for (int64_t m = 0; m < M; m++) {
            const double *av = acc + (v * M + m) * K;
            const int64_t cp = choice[m * n + p];
            double best = INFINITY;
            int64_t at = 0;
            for (int64_t s = 0; s < count[v]; s++) {
                const int64_t i = live[v * K + s];
                const double x = av[i] + uv[i * K + cp];
                if (x < best) best = x, at = i;
            }
            choice[m * n + v] = at;
        }
    }
    free(acc), free(live), free(count);
}

/* TreeDP.marginals, upward half: msg[v][j] = min_i acc[v][i] + up[v][i][j]; acc[p] += msg[v]. */
void bb_marginals_up(int64_t K, double *acc, const double *up, double *msg, int64_t ne,
                     const int64_t *child, const int64_t *par) {
    for (int64_t e = 0; e < ne; e++) {
        const int64_t v = child[e], p = par[e];
        const double *av = acc + v * K, *uv = up + v * K * K;
        double *mv = msg + v * K, *ap = acc + p * K;
        for (int64_t j = 0; j < K; j++) {
            double best = av[0] + uv[j];
            for (int64_t i = 1; i < K; i++) {
                const double x = av[i] + uv[i * K + j];
                best = x < best ? x : best;
            }
            mv[j] = best;
        }
        for (int64_t j = 0; j < K; j++) ap[j] = ap[j] + mv[j];
    }
}

/* TreeDP.marginals, downward half (edges in downward order): down (n, K), edge matrices
 * (n, K, K) per child v, [x_v, x_parent], each plus offset[v] (total − its tree's minimum);
 * edges may be NULL (unit marginals only). */
void bb_marginals_down(int64_t K, const double *acc, const double *up, const double *msg,
                       double *down, double *edges, const double *offset, int64_t ne,
                       const int64_t *child, const int64_t *par) {
    double *outside = malloc(sizeof(double) * (size_t)K);
    for (int64_t e = 0; e < ne; e++) {
        const int64_t v = child[e], p = par[e];
        const double *av = acc + v * K, *uv = up + v * K * K, *mv = msg + v * K;
        const double *ap = acc + p * K, *dp = down + p * K;
        double *dv = down + v * K, *ev = edges ? edges + v * K * K : NULL;
        for (int64_t j = 0; j < K; j++) outside[j] = (ap[j] + dp[j]) - mv[j];
        for (int64_t i = 0; i < K; i++) {
            double best = uv[i * K] + outside[0];
            for (int64_t j = 1; j < K; j++) {
                const double x = uv[i * K + j] + outside[j];
                best = x < best ? x : best;
            }
            dv[i] = best;
            if (ev)
                for (int64_t j = 0; j < K; j++)
                ev[i * K + j] = ((av[i] + uv[i * K + j]) + outside[j]) + offset[v];
        }
    }
    free(outside);
}

/* ---- LocalSearch ------------------------------------------------------------------------
 * The numpy class recomputes every Δ after each move; here the Δ rows of the moved unit and its
 * neighbours (the only ones a move changes) are recomputed by the same formula, so every value
 * equals the numpy one. Entries with an infinite Δloss (padding, fixed-away choices) can never be
 * picked by any rule below, so the scans skip them. */

typedef struct {
    int64_t n, K, R, E;
    const double *loss;     /* (n, K), +inf padding */
    const double *cost;     /* (R, n, K) */
    const double *cap;      /* (R,) */
    const double *norm;     /* (R,) */
    const double *stack;    /* (E, K, K) pair matrices [x_a, x_b], zero padding */
    const int64_t *ends;    /* (E, 2) */
    const int64_t *adj_ptr; /* (n + 1,) CSR over units: incident edges */
    const int64_t *adj_edge;
    int64_t *live;          /* flat indices u·K + k of the finite losses, ascending */
    int64_t *live_ptr;      /* (n + 1,): unit u's are live[live_ptr[u] .. live_ptr[u + 1]) */
} Model;

typedef struct {
    int64_t *choice;        /* (n,) */
    double *pair;           /* (n, K) */
    double *spent;          /* (R,) */
    double *dl;             /* (n, K): Δ objective of each switch */
    double *dc;             /* (R, n, K): Δ cost */
    unsigned char *blocked; /* (n,) scratch */
} State;

/* A Model over the arrays given, with its live (finite-loss) choices listed; the caller frees
 * md.live and md.live_ptr. */
static Model model_new(int64_t n, int64_t K, int64_t R, int64_t E, const double *loss,
                       const double *cost, const double *cap, const double *norm,
                       const double *stack, const int64_t *ends, const int64_t *adj_ptr,
                       const int64_t *adj_edge) {
    Model md = {n,     K,    R,     E,       loss,     cost, cap, norm,
                stack, ends, adj_ptr, adj_edge, malloc(sizeof(int64_t) * (size_t)(n * K)),
                malloc(sizeof(int64_t) * (size_t)(n + 1))};
    md.live_ptr[0] = 0;
    for (int64_t u = 0; u < n; u++) {
        md.live_ptr[u + 1] = md.live_ptr[u];
        for (int64_t k = 0; k < K; k++)
            if (loss[u * K + k] != INFINITY) md.live[md.live_ptr[u + 1]++] = u * K + k;
    }
    return md;
}

static int64_t other_end(const Model *md, int64_t e, int64_t u) {
    return md->ends[2 * e] == u ? md->ends[2 * e + 1] : md->ends[2 * e];
}

static void unit_deltas(const Model *md, State *s, int64_t u) {
    const int64_t n = md->n, K = md->K, c = s->choice[u];
    const double *lu = md->loss + u * K, *pu = s->pair + u * K;
    const double cur = lu[c] + pu[c];
    double *d = s->dl + u * K;
    for (int64_t k = 0; k < K; k++) d[k] = (lu[k] + pu[k]) - cur;
    for (int64_t r = 0; r < md->R; r++) {
        const double *cr = md->cost + (r * n + u) * K;
        double *dr = s->dc + (r * n + u) * K;
        for (int64_t k = 0; k < K; k++) dr[k] = cr[k] - cr[c];
    }
}

static int fits_at(const Model *md, const State *s, int64_t t) {
    const int64_t nk = md->n * md->K;
    for (int64_t r = 0; r < md->R; r++)
        if (!(s->spent[r] + s->dc[r * nk + t] <= md->cap[r])) return 0;
    return 1;
}

static void move(const Model *md, State *s, int64_t u, int64_t k) {
    const int64_t K = md->K, old = s->choice[u];
    for (int64_t t = md->adj_ptr[u]; t < md->adj_ptr[u + 1]; t++) {
        const int64_t e = md->adj_edge[t], a = md->ends[2 * e], b = md->ends[2 * e + 1];
        const double *m = md->stack + e * K * K;
        if (a == u) {
            double *pv = s->pair + b * K;
            for (int64_t j = 0; j < K; j++) pv[j] += m[k * K + j] - m[old * K + j];
        } else {
            double *pv = s->pair + a * K;
            for (int64_t i = 0; i < K; i++) pv[i] += m[i * K + k] - m[i * K + old];
        }
    }
    for (int64_t r = 0; r < md->R; r++) {
        const double *cr = md->cost + (r * md->n + u) * K;
        s->spent[r] += cr[k] - cr[old];
    }
    s->choice[u] = k;
    unit_deltas(md, s, u);
    for (int64_t t = md->adj_ptr[u]; t < md->adj_ptr[u + 1]; t++)
        unit_deltas(md, s, other_end(md, md->adj_edge[t], u));
}

/* LocalSearch.repair: least Δloss per unit of removed (normalised) overrun first. */
static void repair(const Model *md, State *s) {
    const int64_t n = md->n, K = md->K, R = md->R, nk = n * K;
    double over[64];
    for (int64_t it = 0; it < nk; it++) {
        double over_sum = 0.0;
        int any = 0;
        for (int64_t r = 0; r < R; r++) {
            const double o = s->spent[r] - md->cap[r];
            over[r] = (o > 0.0 ? o : 0.0) / md->norm[r];
            if (over[r] != 0.0) any = 1;
            over_sum = r ? over_sum + over[r] : over[r];
        }
        if (!any) return;
        const int64_t nl = md->live_ptr[n];
        double dmin = INFINITY;
        for (int64_t q = 0; q < nl; q++) dmin = s->dl[md->live[q]] < dmin ? s->dl[md->live[q]] : dmin;
        double best = INFINITY;
        int64_t at = 0;
        for (int64_t q = 0; q < nl; q++) {
            const int64_t t = md->live[q];
            if (s->dl[t] == INFINITY) continue;
            double g = 0.0;
            for (int64_t r = 0; r < R; r++) {
                double a = (s->spent[r] + s->dc[r * nk + t]) - md->cap[r];
                a = (a > 0.0 ? a : 0.0) / md->norm[r];
                g = r ? g + a : a;
            }
            const double gain = over_sum - g;
            if (!(gain > EPS)) continue;
            const double score = (s->dl[t] - dmin) / gain;
            if (score < best) best = score, at = t;
        }
        if (!isfinite(best)) return;
        move(md, s, at / K, at % K);
    }
}

/* LocalSearch.one_opt: the best single switch that lowers the objective and keeps the budgets. */
static int one_opt(const Model *md, State *s) {
    double best = INFINITY;
    int64_t at = 0;
    for (int64_t q = 0; q < md->live_ptr[md->n]; q++) {
        const int64_t t = md->live[q];
        if (s->dl[t] < best && fits_at(md, s, t)) best = s->dl[t], at = t;
    }
    const double l = fabs(md->loss[at]);
    if (best >= -EPS * (1.0 > l ? 1.0 : l)) return 0;
    move(md, s, at / md->K, at % md->K);
    return 1;
}

/* LocalSearch.exchange: an over-budget improvement paid for by the cheapest switch of a unit
 * that is neither it nor its neighbour. */
static int exchange(const Model *md, State *s, int64_t tries) {
    const int64_t n = md->n, K = md->K, R = md->R, nk = n * K;
    int64_t cand[64];
    double key[64], room[64];
    int64_t have = 0;
    if (tries > 64) tries = 64;
    for (int64_t q = 0; q < md->live_ptr[n]; q++) { /* the `tries` least Δloss over budget */
        const int64_t t = md->live[q];
        const double x = s->dl[t];
        if (!(x < INFINITY) || (have == tries && !(x < key[have - 1])) || fits_at(md, s, t))
            continue;
        int64_t pos = have < tries ? have++ : have - 1;
        while (pos > 0 && x < key[pos - 1]) {
            key[pos] = key[pos - 1], cand[pos] = cand[pos - 1];
            pos--;
        }
        key[pos] = x, cand[pos] = t;
    }
    for (int64_t c = 0; c < have; c++) {
        const int64_t f = cand[c], u = f / K;
        if (!(s->dl[f] < -EPS)) break;
        for (int64_t r = 0; r < R; r++) room[r] = (md->cap[r] - s->spent[r]) - s->dc[r * nk + f];
        memset(s->blocked, 0, (size_t)n);
        s->blocked[u] = 1;
        for (int64_t t = md->adj_ptr[u]; t < md->adj_ptr[u + 1]; t++)
            s->blocked[other_end(md, md->adj_edge[t], u)] = 1;
        /* only a switch with Δloss below −EPS − Δloss[f] can pay: scan below that (with a
         * margin far above rounding), then check the least found exactly as numpy does */
        const double need = -EPS - s->dl[f];
        double best = need + fabs(need) * 1e-9 + 1e-300;
        int64_t at = -1;
        for (int64_t w = 0; w < n; w++) {
            if (s->blocked[w]) continue;
            for (int64_t q = md->live_ptr[w]; q < md->live_ptr[w + 1]; q++) {
                const int64_t t = md->live[q];
                if (!(s->dl[t] < best)) continue;
                int ok = 1;
                for (int64_t r = 0; r < R && ok; r++) ok = s->dc[r * nk + t] <= room[r];
                if (ok) best = s->dl[t], at = t;
            }
        }
        if (at >= 0 && s->dl[f] + best < -EPS) {
            move(md, s, u, f % K);
            move(md, s, at / K, at % K);
            return 1;
        }
    }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* LocalSearch.repair (mode 0) or LocalSearch.improve without its final refresh (mode 1):
 * single switches, then exchanges, until neither helps or CLOCK_MONOTONIC passes deadline
 * (Python's time.perf_counter clock). Returns the number of moves, or -1 (too many budgets). */
VECTOR_CLONES
int bb_local_search(int64_t mode, int64_t n, int64_t K, int64_t R, int64_t E, const double *loss,
                    const double *cost, const double *cap, const double *norm,
                    const double *stack, const int64_t *ends, const int64_t *adj_ptr,
                    const int64_t *adj_edge, int64_t *choice, double *pair, double *spent,
                    double deadline, int64_t tries) {
    if (R > 64) return -1;
    Model md = model_new(n, K, R, E, loss, cost, cap, norm, stack, ends, adj_ptr, adj_edge);
    State s = {choice, pair, spent, malloc(sizeof(double) * (size_t)(n * K)),
               malloc(sizeof(double) * (size_t)((R ? R : 1) * n * K)), malloc((size_t)n)};
    for (int64_t u = 0; u < n; u++) unit_deltas(&md, &s, u);
    if (mode == 0) {
        repair(&md, &s);
    } else {
        while (now() < deadline) {
            if (one_opt(&md, &s)) continue;
            if (!exchange(&md, &s, tries)) break;
        }
    }
    free(s.dl), free(s.dc), free(s.blocked), free(md.live), free(md.live_ptr);
    return 0;
}

/* LocalSearch.refresh: pair contributions as the two np.add.at calls (edge order), totals
 * summed unit by unit (np.add.accumulate's order). */
static void refresh_state(const Model *md, State *s) {
    const int64_t n = md->n, K = md->K;
    memset(s->pair, 0, sizeof(double) * (size_t)(n * K));
    for (int64_t e = 0; e < md->E; e++) {
        const double *m = md->stack + e * K * K;
        double *pa = s->pair + md->ends[2 * e] * K;
        const int64_t cb = s->choice[md->ends[2 * e + 1]];
        for (int64_t i = 0; i < K; i++) pa[i] += m[i * K + cb];
    }
    for (int64_t e = 0; e < md->E; e++) {
        const double *m = md->stack + e * K * K;
        double *pb = s->pair + md->ends[2 * e + 1] * K;
        const int64_t ca = s->choice[md->ends[2 * e]];
        for (int64_t j = 0; j < K; j++) pb[j] += m[ca * K + j];
    }
    for (int64_t r = 0; r < md->R; r++) {
        const double *cr = md->cost + r * n * K;
        double t = cr[s->choice[0]];
        for (int64_t u = 1; u < n; u++) t = t + cr[u * K + s->choice[u]];
        s->spent[r] = t;
    }
}

static int feasible(const Model *md, const State *s) {
    for (int64_t r = 0; r < md->R; r++)
        if (!(s->spent[r] <= md->cap[r])) return 0;
    return 1;
}

/* Σ chosen loss + Σ chosen pair terms, each summed in order (np.add.accumulate's order). */
static double objective(const Model *md, const double *loss, const int64_t *choice) {
    const int64_t K = md->K;
    double a = loss[choice[0]];
    for (int64_t u = 1; u < md->n; u++) a = a + loss[u * K + choice[u]];
    if (!md->E) return a;
    double b = md->stack[choice[md->ends[0]] * K + choice[md->ends[1]]];
    for (int64_t e = 1; e < md->E; e++)
        b = b + md->stack[(e * K + choice[md->ends[2 * e]]) * K + choice[md->ends[2 * e + 1]]];
    return a + b;
}

static int same(const int64_t *a, const int64_t *b, int64_t n) {
    return memcmp(a, b, sizeof(int64_t) * (size_t)n) == 0;
}

/* lagrangian.polish: repair each start (S, n) and improve it by swaps; the best feasible result
 * (by ``objective`` with the model's own losses ``objective_loss``) into best. Starts equal to
 * an earlier one, or using a choice whose loss is +inf, are skipped, and so is a start that
 * repairs to a plan an earlier start repaired to. Returns 1 if a plan was found, 0 if not,
 * -1 with too many budgets. */
VECTOR_CLONES
int bb_polish(int64_t n, int64_t K, int64_t R, int64_t E, const double *loss, const double *cost,
              const double *cap, const double *norm, const double *stack, const int64_t *ends,
              const int64_t *adj_ptr, const int64_t *adj_edge, int64_t S,
              const int64_t *starts, double deadline, int64_t tries,
              const double *objective_loss, int64_t *best) {
    if (R > 64) return -1;
    Model md = model_new(n, K, R, E, loss, cost, cap, norm, stack, ends, adj_ptr, adj_edge);
    double spent[64];
    State s = {malloc(sizeof(int64_t) * (size_t)n), malloc(sizeof(double) * (size_t)(n * K)),
               spent, malloc(sizeof(double) * (size_t)(n * K)),
               malloc(sizeof(double) * (size_t)((R ? R : 1) * n * K)), malloc((size_t)n)};
    int64_t *done = malloc(sizeof(int64_t) * (size_t)((S ? S : 1) * n)), ndone = 0;
    double value = INFINITY;
    int found = 0;
    for (int64_t q = 0; q < S; q++) {
        const int64_t *start = starts + q * n;
        int skip = 0;
        for (int64_t p = 0; p < q && !skip; p++) skip = same(start, starts + p * n, n);
        for (int64_t u = 0; u < n && !skip; u++) skip = loss[u * K + start[u]] == INFINITY;
        if (skip) continue;
        memcpy(s.choice, start, sizeof(int64_t) * (size_t)n);
        refresh_state(&md, &s);
        for (int64_t u = 0; u < n; u++) unit_deltas(&md, &s, u);
        repair(&md, &s);
        if (!feasible(&md, &s)) continue;
        for (int64_t p = 0; p < ndone && !skip; p++) skip = same(s.choice, done + p * n, n);
        if (skip) continue;
        memcpy(done + ndone++ * n, s.choice, sizeof(int64_t) * (size_t)n);
        while (now() < deadline) {
            if (one_opt(&md, &s)) continue;
            if (!exchange(&md, &s, tries)) break;
        }
        refresh_state(&md, &s);
        if (!feasible(&md, &s)) continue;
        const double v = objective(&md, objective_loss, s.choice);
        if (v < value) {
            value = v, found = 1;
            memcpy(best, s.choice, sizeof(int64_t) * (size_t)n);
        }
    }
    free(s.choice), free(s.pair), free(s.dl), free(s.dc), free(s.blocked), free(done);
    free(md.live), free(md.live_ptr);
    return found;
}

/* LocalSearch.refresh's pair contributions: as the two np.add.at calls, in edge order. */
void bb_pair_refresh(int64_t n, int64_t K, int64_t E, const double *stack, const int64_t *ends,
                     const int64_t *choice, double *pair) {
    memset(pair, 0, sizeof(double) * (size_t)(n * K));
    for (int64_t e = 0; e < E; e++) {
        const double *m = stack + e * K * K;
        double *pa = pair + ends[2 * e] * K;
        const int64_t cb = choice[ends[2 * e + 1]];
        for (int64_t i = 0; i < K; i++) pa[i] += m[i * K + cb];
    }
    for (int64_t e = 0; e < E; e++) {
        const double *m = stack + e * K * K;
        double *pb = pair + ends[2 * e + 1] * K;
        const int64_t ca = choice[ends[2 * e]];
        for (int64_t j = 0; j < K; j++) pb[j] += m[ca * K + j];
    }
}
