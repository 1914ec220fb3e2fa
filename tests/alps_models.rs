//! ALPS's solvers against reference fits computed by statsmodels and scikit-learn on R's
//! mtcars (tests/data/*.json): relative error at most 1e-6.

use alps_models::{linear, logistic, InMemory, Triangle};
use ndarray::Array2;
use serde_json::Value;

const COLUMNS: [&str; 11] = [
    "mpg", "cyl", "disp", "hp", "drat", "wt", "qsec", "vs", "am", "gear", "carb",
];

fn reference(name: &str) -> Value {
    let path = format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn mtcars(columns: &[&str]) -> Array2<f64> {
    let text =
        std::fs::read_to_string(format!("{}/data/mtcars.csv", env!("CARGO_MANIFEST_DIR"))).unwrap();
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
