"""The peer of ALPS in `make bench`: the fits done the way a user would otherwise do them,
reading the table with psycopg and fitting with numpy/statsmodels. Prints JSON timings."""
import json
import sys
import time

import numpy as np
import psycopg
import statsmodels.api as sm

conninfo = sys.argv[1]
columns = [f"x{i}" for i in range(1, 11)]
t0 = time.perf_counter()
with psycopg.connect(conninfo) as conn:
    rows = conn.execute(f"SELECT {', '.join(columns)}, y, b::int FROM bench.t").fetchall()
t1 = time.perf_counter()
data = np.array(rows, dtype=float)  # NULL -> nan
t2 = time.perf_counter()
x = sm.add_constant(data[:, :10])
ok = ~np.isnan(data[:, 10])
ols = sm.OLS(data[ok, 10], x[ok]).fit()
t3 = time.perf_counter()
okb = ~np.isnan(data[:, 11])
features = np.column_stack([x[okb], np.nan_to_num(data[okb, 10])])
okb2 = ~np.isnan(data[okb, 10])
logit = sm.Logit(data[okb, 11][okb2], features[okb2]).fit(disp=0)
t4 = time.perf_counter()
print(json.dumps({
    "read_seconds": t1 - t0,
    "to_numpy_seconds": t2 - t1,
    "ols_seconds": t3 - t2,
    "logit_seconds": t4 - t3,
    "ols_r2": ols.rsquared,
    "logit_iterations": int(logit.mle_retvals["iterations"]),
    "rows": len(rows),
}))
