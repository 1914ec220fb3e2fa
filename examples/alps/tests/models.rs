//! ALPS's solvers against reference fits computed by statsmodels and scikit-learn on R's
//! mtcars (the workspace's tests/data/*.json, shared with the integration tests): relative
//! error at most 1e-6.

use alps_models::{linear, logistic, InMemory, Triangle};
use ndarray::Array2;
use serde_json::Value;

const COLUMNS: [&str; 11] = [
    "mpg", "cyl", "disp", "hp", "drat", "wt", "qsec", "vs", "am", "gear", "carb",
];

/// The workspace's `tests/data`, which the integration tests read too.
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data");

fn reference(name: &str) -> Value {
    let path = format!("{DATA}/{name}");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn mtcars(columns: &[&str]) -> Array2<f64> {
    let text = std::fs::read_to_string(format!("{DATA}/mtcars.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let index: Vec<usize> = columns
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            index.iter().map(|&i| fields[i].parse().unwrap()).collect()
        })
        .collect();
    Array2::from_shape_vec((rows.len(), columns.len()), rows.concat()).unwrap()
}

fn close(what: &str, got: f64, want: f64) {
    let rel = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        rel <= 1e-6 || (got - want).abs() < 1e-12,
        "{what}: got {got}, want {want} (relative error {rel:e})"
    );
}

fn triangle(data: &Array2<f64>) -> Triangle {
    let mut t = Triangle::new(data.ncols() + 1);
    // Several batches, as the worker feeds them.
    for chunk in data.axis_chunks_iter(ndarray::Axis(0), 7) {
        t.add_data(chunk);
    }
    t
}

#[test]
fn ols_of_every_column_on_all_others() {
    let reference = reference("mtcars_ols.json");
    let data = mtcars(&COLUMNS);
    let t = triangle(&data);
    for (target, name) in COLUMNS.iter().enumerate() {
        let want = &reference["all_others"][name];
        let fit = linear::fit(&t, target).unwrap();
        let predictors: Vec<&str> = want["predictors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let names: Vec<&str> = fit.supports.iter().map(|&j| COLUMNS[j]).collect();
        assert_eq!(names, predictors);
        let keys: Vec<&str> = std::iter::once("(Intercept)")
            .chain(predictors.iter().copied())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            close(
                &format!("{name} coef {key}"),
                fit.coef[i],
                want["coef"][key].as_f64().unwrap(),
            );
            close(
                &format!("{name} se {key}"),
                fit.std_err[i],
                want["se"][key].as_f64().unwrap(),
            );
            close(
                &format!("{name} t {key}"),
                fit.t_stats[i],
                want["t"][key].as_f64().unwrap(),
            );
            close(
                &format!("{name} p {key}"),
                fit.p_values[i],
                want["p"][key].as_f64().unwrap(),
            );
        }
        close(&format!("{name} r2"), fit.r2, want["r2"].as_f64().unwrap());
        close(
            &format!("{name} rss"),
            fit.rss,
            want["rss"].as_f64().unwrap(),
        );
        close(
            &format!("{name} condition number"),
            fit.condition_no,
            want["cond_number"].as_f64().unwrap(),
        );
        assert_eq!(fit.rows, 32);
    }
}

#[test]
fn logistic_maximum_likelihood_fits() {
    let reference = reference("mtcars_logit.json");
    for (key, columns) in [
        ("am~wt+hp", vec!["am", "wt", "hp"]),
        ("vs~mpg", vec!["vs", "mpg"]),
    ] {
        let want = &reference["mle"][key];
        let data = mtcars(&columns);
        let t = triangle(&data);
        let fit = logistic::fit(&mut InMemory(data), &t, 0, logistic::Options::default())
            .unwrap()
            .unwrap();
        assert!(
            fit.converged && !fit.separated && fit.penalty == 0.0,
            "{key}: {fit:?}"
        );
        assert!(fit.iterations <= 20);
        for (i, name) in std::iter::once("(Intercept)")
            .chain(columns[1..].iter().copied())
            .enumerate()
        {
            close(
                &format!("{key} coef {name}"),
                fit.coef[i],
                want["coef"][name].as_f64().unwrap(),
            );
            close(
                &format!("{key} se {name}"),
                fit.std_err[i],
                want["se"][name].as_f64().unwrap(),
            );
            close(
                &format!("{key} odds ratio {name}"),
                fit.odds_ratios[i],
                want["odds_ratio"][name].as_f64().unwrap(),
            );
        }
        close(
            &format!("{key} deviance"),
            -2.0 * fit.log_likelihood,
            want["deviance"].as_f64().unwrap(),
        );
    }
}

#[test]
fn separation_is_detected_and_refit_with_l2() {
    let reference = reference("mtcars_logit.json");
    let data = mtcars(&COLUMNS);
    let t = triangle(&data);
    for target_name in ["am", "vs"] {
        let target = COLUMNS.iter().position(|c| *c == target_name).unwrap();
        let want = &reference["ridge"]["fits"][target_name];
        assert_eq!(
            reference["mle"][format!("{target_name}~all")]["separation_lp"]["complete_separation"],
            true
        );
        let fit = logistic::fit(
            &mut InMemory(data.clone()),
            &t,
            target,
            logistic::Options::default(),
        )
        .unwrap()
        .unwrap();
        assert!(fit.separated, "{target_name}: separation not detected");
        assert_eq!(fit.penalty, 1.0);
        assert!(
            fit.converged,
            "{target_name}: the penalized refit converges"
        );
        let predictors: Vec<&str> = want["predictors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let names: Vec<&str> = fit.supports.iter().map(|&j| COLUMNS[j]).collect();
        assert_eq!(names, predictors);
        close(
            &format!("{target_name} intercept_std"),
            fit.coef_std[0],
            want["intercept_std"].as_f64().unwrap(),
        );
        close(
            &format!("{target_name} intercept_raw"),
            fit.coef[0],
            want["intercept_raw"].as_f64().unwrap(),
        );
        for (i, name) in predictors.iter().enumerate() {
            close(
                &format!("{target_name} coef_std {name}"),
                fit.coef_std[i + 1],
                want["coef_std"][name].as_f64().unwrap(),
            );
            close(
                &format!("{target_name} coef_raw {name}"),
                fit.coef[i + 1],
                want["coef_raw"][name].as_f64().unwrap(),
            );
            close(
                &format!("{target_name} mean {name}"),
                fit.scaling.means[i],
                want["means"][name].as_f64().unwrap(),
            );
            close(
                &format!("{target_name} sd {name}"),
                fit.scaling.scales[i],
                want["pop_sd"][name].as_f64().unwrap(),
            );
        }
    }
}

#[test]
fn tail_probabilities() {
    use alps_models::stats::{erfc, normal_two_sided_p, t_two_sided_p};
    close("erfc(0.5)", erfc(0.5), 0.479_500_122_186_953_5);
    close("erfc(3)", erfc(3.0), 2.209_049_699_858_544e-5);
    close(
        "normal p(1.96)",
        normal_two_sided_p(1.959_963_984_540_054),
        0.05,
    );
    close(
        "t p(2.0796, 21)",
        t_two_sided_p(2.079_613_844_727_662_7, 21.0),
        0.05,
    );
}

/// Longley's six predictors (NIST StRD), a classic of ill-conditioning: large offsets
/// (years near 1950, GNP near 400,000) and nearly collinear columns.
const LONGLEY_X: [[f64; 6]; 16] = [
    [83.0, 234289.0, 2356.0, 1590.0, 107608.0, 1947.0],
    [88.5, 259426.0, 2325.0, 1456.0, 108632.0, 1948.0],
    [88.2, 258054.0, 3682.0, 1616.0, 109773.0, 1949.0],
    [89.5, 284599.0, 3351.0, 1650.0, 110929.0, 1950.0],
    [96.2, 328975.0, 2099.0, 3099.0, 112075.0, 1951.0],
    [98.1, 346999.0, 1932.0, 3594.0, 113270.0, 1952.0],
    [99.0, 365385.0, 1870.0, 3547.0, 115094.0, 1953.0],
    [100.0, 363112.0, 3578.0, 3350.0, 116219.0, 1954.0],
    [101.2, 397469.0, 2904.0, 3048.0, 117388.0, 1955.0],
    [104.6, 419180.0, 2822.0, 2857.0, 118734.0, 1956.0],
    [108.4, 442769.0, 2936.0, 2798.0, 120445.0, 1957.0],
    [110.8, 444546.0, 4681.0, 2637.0, 121950.0, 1958.0],
    [112.6, 482704.0, 3813.0, 2552.0, 123366.0, 1959.0],
    [114.2, 502601.0, 3931.0, 2514.0, 125368.0, 1960.0],
    [115.7, 518173.0, 4806.0, 2572.0, 127852.0, 1961.0],
    [116.9, 554894.0, 4007.0, 2827.0, 130081.0, 1962.0],
];

/// Correct significant digits of `got` against `want`: -log10 of the largest relative error.
fn digits(got: &[f64], want: &[f64]) -> f64 {
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| ((g - w) / w).abs())
        .fold(0.0f64, f64::max);
    -worst.max(1e-17).log10()
}

/// Fits the last column on the others, as ALPS does, and returns the coefficients.
fn fit_last(data: &Array2<f64>) -> Vec<f64> {
    let t = triangle(data);
    linear::fit(&t, data.ncols() - 1).unwrap().coef
}

#[test]
fn longley_class_problems_are_solved_to_twelve_digits() {
    // y is an exact combination of Longley's columns (the deflator times ten, so that every
    // value is an integer), with coefficients that are multiples of 1/256: every value and
    // every sum is exact in double precision, so the least-squares solution is exactly
    // `beta` and every digit lost is the algorithm's. The magnitudes are those of Longley's
    // certified fit.
    let beta = [
        -3_482_259.0,
        1.5,
        -0.035_156_25,
        -2.0,
        -1.0,
        -0.050_781_25,
        1829.0,
    ];
    let mut data = Array2::zeros((16, 7));
    for (i, x) in LONGLEY_X.iter().enumerate() {
        let mut y = beta[0];
        for j in 0..6 {
            let v = if j == 0 { (x[0] * 10.0).round() } else { x[j] };
            data[[i, j]] = v;
            y += beta[j + 1] * v;
        }
        data[[i, 6]] = y;
    }
    let got = fit_last(&data);
    let d = digits(&got, &beta);
    assert!(d >= 12.0, "{d:.1} correct digits: {got:?}");
}

#[test]
fn an_exact_degree_five_polynomial_is_recovered_to_nine_digits() {
    // y = 7 - 3x + 2x^2 - x^3/2 + x^4/4 - x^5/64 at x = 0..20: every value exact in double
    // precision; the design [1, x, ..., x^5] is badly conditioned (about 1e8).
    let c = [7.0, -3.0, 2.0, -0.5, 0.25, -0.015_625];
    let mut data = Array2::zeros((21, 6));
    for i in 0..21 {
        let x = i as f64;
        let mut y = 0.0;
        for (k, ck) in c.iter().enumerate() {
            let p = x.powi(k as i32);
            if k > 0 {
                data[[i, k - 1]] = p;
            }
            y += ck * p;
        }
        data[[i, 5]] = y;
    }
    let got = fit_last(&data);
    let d = digits(&got, &c);
    assert!(d >= 9.0, "{d:.1} correct digits: {got:?}");
}
