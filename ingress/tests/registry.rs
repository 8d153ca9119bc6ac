//! The function registry (`functions.toml`) and the checklist in `docs/adding-a-function.md` are
//! kept true: every crate under `functions/` is registered, and every registered function has
//! each piece the checklist names (each problem is reported with the checklist's tag). Then a
//! new function is added to a scratch copy of the tree by following the checklist, which must
//! pass, and each piece is removed in turn, which must fail naming that piece.

use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tollgate_ingress::registry::{self, Kind};
use tollgate_ingress::routes::RouteTable;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The checklist's tags, in `docs/adding-a-function.md` order.
const TAGS: [&str; 10] = [
    "workspace",
    "binary",
    "registry",
    "events",
    "template",
    "log-group",
    "alarm",
    "route",
    "invoke",
    "schedule",
];

/// The argument of a CloudFormation intrinsic (`!Ref X`, `!GetAtt X.Arn`), as a string.
fn intrinsic_arg(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => t.value.as_str().map(String::from),
        Value::Mapping(m) if m.len() == 1 => m.iter().next()?.1.as_str().map(String::from),
        _ => None,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every missing piece of every function under `root`, each as "[tag] what".
fn problems(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let functions = match registry::parse(&read(&root.join("functions.toml"))) {
        Ok(f) => f,
        Err(e) => return vec![format!("[registry] functions.toml: {e}")],
    };
    let workspace: toml::Value = toml::from_str(&read(&root.join("Cargo.toml"))).unwrap();
    let members: BTreeSet<&str> = workspace["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    // Every function crate is registered.
    let registered: BTreeSet<&str> = functions.iter().map(|f| f.package.as_str()).collect();
    for entry in std::fs::read_dir(root.join("functions")).unwrap().flatten() {
        let package = format!("functions/{}", entry.file_name().to_string_lossy());
        if entry.path().join("Cargo.toml").exists() && !registered.contains(package.as_str()) {
            out.push(format!("[registry] {package} has no entry in functions.toml"));
        }
    }
    let template: Value = serde_yaml::from_str(&read(&root.join("template.yaml"))).unwrap();
    let resources = &template["Resources"];
    let routes = RouteTable::parse(&read(&root.join("routes.toml"))).unwrap();
    let routed: BTreeSet<&str> = routes.functions().into_iter().collect();
    let task_invokes: BTreeSet<String> = resources["TaskRole"]["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|st| st["Action"] == "lambda:InvokeFunction")
        .flat_map(|st| st["Resource"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| intrinsic_arg(&r))
        .collect();
    let task_aliases: Vec<String> = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["Name"] == "TOLLGATE_FUNCTION_ALIASES")
        .and_then(|e| e["Value"].as_str())
        .map(|v| v.split(',').map(String::from).collect())
        .unwrap_or_default();
    for f in &functions {
        let (name, package) = (f.name.as_str(), f.package.as_str());
        if !members.contains(package) {
            out.push(format!("[workspace] {package} is not a workspace member"));
        }
        let manifest: toml::Value = toml::from_str(&read(&root.join(package).join("Cargo.toml")))
            .unwrap_or(toml::Value::Table(Default::default()));
        let bins: Vec<&str> = manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("name").and_then(|n| n.as_str()))
            .collect();
        if !bins.contains(&name) {
            out.push(format!("[binary] {package} has no [[bin]] named {name}"));
        }
        let events = tollgate_core::http_fn::event_files(&root.join("events"), &format!("{name}-"));
        if events.is_empty() {
            out.push(format!("[events] no events/{name}-*.json"));
        }
        for (file, body) in events {
            if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                out.push(format!("[events] {file} is not JSON"));
            }
        }
        let r = &resources[f.template.as_str()];
        let props = &r["Properties"];
        let binary = r["Metadata"]["BuildProperties"]["Binary"].as_str();
        if r["Type"] != "AWS::Serverless::Function"
            || props["CodeUri"].as_str() != Some(package)
            || binary != Some(name)
            || intrinsic_arg(&props["FunctionName"]).as_deref() != Some(&format!("${{AWS::StackName}}-{name}"))
        {
            out.push(format!(
                "[template] {} in template.yaml is not an AWS::Serverless::Function with CodeUri {package}, Binary {name} and FunctionName ${{AWS::StackName}}-{name}",
                f.template
            ));
        }
        let group = intrinsic_arg(&props["LoggingConfig"]["LogGroup"]).unwrap_or_default();
        let g = &resources[group.as_str()];
        if g["Type"] != "AWS::Logs::LogGroup" || g["Properties"].get("RetentionInDays").is_none() {
            out.push(format!(
                "[log-group] {} has no log group of its own with a retention",
                f.template
            ));
        }
        let alarmed = resources.as_mapping().into_iter().flatten().any(|(_, a)| {
            a["Type"] == "AWS::CloudWatch::Alarm"
                && a["Properties"]["MetricName"] == "Errors"
                && intrinsic_arg(&a["Properties"]["Dimensions"][0]["Value"]).as_deref() == Some(f.template.as_str())
        });
        if !alarmed {
            out.push(format!("[alarm] no alarm on the Errors of {}", f.template));
        }
        if f.kind == Kind::Http && !routed.contains(name) {
            out.push(format!("[route] no route in routes.toml calls {name}"));
        }
        // A route function through its `live` alias only (what CodeDeploy shifts), the audit
        // writer itself.
        let (called, target) = match f.kind {
            Kind::Http => (true, format!("{}.Alias", f.template)),
            Kind::AuditWriter => (true, format!("{}.Arn", f.template)),
            _ => (false, format!("{}.Arn", f.template)),
        };
        let granted: Vec<&String> = task_invokes
            .iter()
            .filter(|r| r.split('.').next() == Some(f.template.as_str()))
            .collect();
        if f.kind == Kind::Http {
            let alarmed_deploy = props["DeploymentPreference"]["Alarms"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(intrinsic_arg)
                .any(|a| {
                    let alarm = &resources[a.as_str()]["Properties"];
                    alarm["MetricName"] == "Errors"
                        && intrinsic_arg(&alarm["Dimensions"][0]["Value"]).as_deref() == Some(f.template.as_str())
                });
            if props["AutoPublishAlias"] != "live" || !alarmed_deploy {
                out.push(format!(
                    "[invoke] {} needs AutoPublishAlias: live and a DeploymentPreference on its errors alarm",
                    f.template
                ));
            }
            if !task_aliases.contains(&format!("{name}=live")) {
                out.push(format!(
                    "[invoke] the task's TOLLGATE_FUNCTION_ALIASES lacks {name}=live"
                ));
            }
        }
        if called && granted != [&target] || !called && !granted.is_empty() {
            out.push(format!(
                "[invoke] the task role must have lambda:InvokeFunction on {} and nothing else of {}: has {granted:?}",
                if called { target.as_str() } else { "none" },
                f.template
            ));
        }
        let scheduled = props["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .any(|(_, e)| e["Type"] == "Schedule");
        if (f.kind == Kind::Scheduled) != scheduled {
            out.push(format!(
                "[schedule] {}: a schedule exactly when kind = \"scheduled\"",
                f.template
            ));
        }
    }
    out
}

#[test]
fn the_checklist_names_exactly_the_pieces_the_check_checks() {
    let doc = read(&root().join("docs/adding-a-function.md"));
    let tags: Vec<String> = doc
        .match_indices("`[")
        .filter_map(|(i, _)| {
            let rest = &doc[i + 2..];
            let tag = &rest[..rest.find("]`")?];
            tag.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-')
                .then(|| tag.to_string())
        })
        .collect();
    assert_eq!(tags, TAGS.to_vec(), "docs/adding-a-function.md");
}

#[test]
fn every_function_is_registered_and_has_every_piece() {
    let problems = problems(&root());
    assert!(problems.is_empty(), "{problems:#?}");
    // The ingress links exactly the registry's embedded functions.
    let functions = registry::functions();
    let dir = std::env::temp_dir().join(format!("tollgate-registry-{}", uuid::Uuid::new_v4().simple()));
    let backends = tollgate_embedded::open(&tollgate_core::backends::StorageSettings {
        mode: tollgate_core::backends::Mode::Embedded,
        data_dir: dir.clone(),
        log_origin: None,
    })
    .unwrap();
    let linked: BTreeSet<String> = tollgate_ingress::app::embedded_functions(&backends)
        .into_keys()
        .collect();
    let embedded: BTreeSet<String> = functions
        .iter()
        .filter(|f| f.embedded)
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(linked, embedded);
    let _ = std::fs::remove_dir_all(dir);
}

/// Copies what the check reads into a scratch tree.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-scratch-{}", uuid::Uuid::new_v4().simple()));
    for file in ["Cargo.toml", "functions.toml", "template.yaml", "routes.toml"] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(root().join(file), dir.join(file)).unwrap();
    }
    std::fs::create_dir_all(dir.join("events")).unwrap();
    for e in std::fs::read_dir(root().join("events")).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join("events").join(e.file_name())).unwrap();
    }
    for e in std::fs::read_dir(root().join("functions")).unwrap().flatten() {
        let to = dir.join("functions").join(e.file_name());
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(e.path().join("Cargo.toml"), to.join("Cargo.toml")).unwrap();
    }
    dir
}

/// Follows the checklist for a new scheduled function `nightly-report` in the scratch tree.
fn add_function(dir: &Path) {
    let edit = |file: &str, f: &dyn Fn(String) -> String| {
        let p = dir.join(file);
        std::fs::write(&p, f(read(&p))).unwrap();
    };
    // [workspace] + [binary]
    std::fs::create_dir_all(dir.join("functions/nightly-report")).unwrap();
    std::fs::write(
        dir.join("functions/nightly-report/Cargo.toml"),
        "[package]\nname = \"tollgate-nightly-report\"\n\n[[bin]]\nname = \"nightly-report\"\npath = \"src/main.rs\"\n",
    )
    .unwrap();
    edit("Cargo.toml", &|s| {
        s.replacen("members = [", "members = [\n    \"functions/nightly-report\",", 1)
    });
    // [registry]
    edit("functions.toml", &|s| {
        s + "\n[[functions]]\nname = \"nightly-report\"\npackage = \"functions/nightly-report\"\ntemplate = \"NightlyReportFunction\"\nkind = \"scheduled\"\nembedded = false\nlocal_stack = false\n"
    });
    // [events]
    std::fs::write(
        dir.join("events/nightly-report-schedule.json"),
        r#"{"detail-type":"Scheduled Event","source":"aws.events"}"#,
    )
    .unwrap();
    // [template] + [log-group] + [alarm] + [schedule]
    let mut t: Value = serde_yaml::from_str(&read(&dir.join("template.yaml"))).unwrap();
    let add: Value = serde_yaml::from_str(
        r#"
NightlyReportFunction:
  Type: AWS::Serverless::Function
  Metadata:
    BuildMethod: rust-cargolambda
    BuildProperties: {Binary: nightly-report}
  Properties:
    FunctionName: !Sub ${AWS::StackName}-nightly-report
    CodeUri: functions/nightly-report
    LoggingConfig: {LogGroup: !Ref NightlyReportLogGroup}
    Events:
      Nightly: {Type: Schedule, Properties: {Schedule: cron(0 3 * * ? *)}}
NightlyReportLogGroup:
  Type: AWS::Logs::LogGroup
  Properties:
    LogGroupName: !Sub /aws/lambda/${AWS::StackName}-nightly-report
    RetentionInDays: !Ref LogRetentionDays
NightlyReportErrorsAlarm:
  Type: AWS::CloudWatch::Alarm
  Properties:
    Namespace: AWS/Lambda
    MetricName: Errors
    Dimensions: [{Name: FunctionName, Value: !Ref NightlyReportFunction}]
"#,
    )
    .unwrap();
    let resources = t["Resources"].as_mapping_mut().unwrap();
    for (k, v) in add.as_mapping().unwrap() {
        resources.insert(k.clone(), v.clone());
    }
    std::fs::write(dir.join("template.yaml"), serde_yaml::to_string(&t).unwrap()).unwrap();
}

/// Removes one piece of the added function from a scratch tree.
type Forget = Box<dyn Fn(&Path)>;

#[test]
fn a_function_added_by_the_checklist_passes_and_each_forgotten_piece_is_named() {
    let dir = scratch();
    assert_eq!(problems(&dir), Vec::<String>::new(), "the scratch copy of the tree");
    add_function(&dir);
    assert_eq!(problems(&dir), Vec::<String>::new(), "following the checklist");

    // Each piece forgotten in turn (on a fresh copy), named by its tag.
    let yaml_edit = |dir: &Path, f: &dyn Fn(&mut serde_yaml::Mapping)| {
        let p = dir.join("template.yaml");
        let mut t: Value = serde_yaml::from_str(&read(&p)).unwrap();
        f(t["Resources"].as_mapping_mut().unwrap());
        std::fs::write(p, serde_yaml::to_string(&t).unwrap()).unwrap();
    };
    let forget: Vec<(&str, Forget)> = vec![
        (
            "workspace",
            Box::new(|d: &Path| {
                let p = d.join("Cargo.toml");
                std::fs::write(&p, read(&p).replace("    \"functions/nightly-report\",", "")).unwrap();
            }),
        ),
        (
            "binary",
            Box::new(|d: &Path| {
                let p = d.join("functions/nightly-report/Cargo.toml");
                std::fs::write(&p, read(&p).replace("name = \"nightly-report\"", "name = \"nightly\"")).unwrap();
            }),
        ),
        (
            "registry",
            Box::new(|d: &Path| {
                let p = d.join("functions.toml");
                let s = read(&p);
                let cut = s.find("\n[[functions]]\nname = \"nightly-report\"").unwrap();
                std::fs::write(&p, &s[..cut]).unwrap();
            }),
        ),
        (
            "events",
            Box::new(|d: &Path| std::fs::remove_file(d.join("events/nightly-report-schedule.json")).unwrap()),
        ),
        (
            "template",
            Box::new(move |d: &Path| {
                yaml_edit(d, &|r| {
                    r["NightlyReportFunction"]["Metadata"]["BuildProperties"]["Binary"] = "other".into();
                })
            }),
        ),
        (
            "log-group",
            Box::new(move |d: &Path| {
                yaml_edit(d, &|r| {
                    r.remove("NightlyReportLogGroup");
                })
            }),
        ),
        (
            "alarm",
            Box::new(move |d: &Path| {
                yaml_edit(d, &|r| {
                    r.remove("NightlyReportErrorsAlarm");
                })
            }),
        ),
        (
            "schedule",
            Box::new(move |d: &Path| {
                yaml_edit(d, &|r| {
                    r["NightlyReportFunction"]["Properties"]
                        .as_mapping_mut()
                        .unwrap()
                        .remove("Events");
                })
            }),
        ),
    ];
    for (tag, f) in &forget {
        let d = scratch();
        add_function(&d);
        f(&d);
        let found = problems(&d);
        assert!(
            found.iter().any(|p| p.starts_with(&format!("[{tag}]"))),
            "forgetting [{tag}] was not named: {found:?}"
        );
        let _ = std::fs::remove_dir_all(d);
    }
    // The two pieces a scheduled function does not need are checked on the real tree's kinds:
    // a route for every http function, the task's invoke permission for what it calls.
    let d = scratch();
    let p = d.join("routes.toml");
    let routes = read(&p);
    let cut = routes.find("[[routes]]\npath = \"/v1/requests\"").unwrap();
    std::fs::write(&p, &routes[..cut]).unwrap();
    assert!(
        problems(&d).iter().any(|p| p.starts_with("[route]")),
        "{:?}",
        problems(&d)
    );
    let d2 = scratch();
    yaml_edit(&d2, &|r| {
        let st = r["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_sequence_mut()
            .unwrap();
        for s in st.iter_mut() {
            if s["Action"] == "lambda:InvokeFunction" {
                s["Resource"].as_sequence_mut().unwrap().pop();
            }
        }
    });
    assert!(
        problems(&d2).iter().any(|p| p.starts_with("[invoke]")),
        "{:?}",
        problems(&d2)
    );
    // A route function without its alias, or invoked past it ($LATEST), is named too.
    let d3 = scratch();
    yaml_edit(&d3, &|r| {
        r["EchoFunction"]["Properties"]
            .as_mapping_mut()
            .unwrap()
            .remove("AutoPublishAlias");
    });
    assert!(
        problems(&d3)
            .iter()
            .any(|p| p.contains("EchoFunction needs AutoPublishAlias")),
        "{:?}",
        problems(&d3)
    );
    let d4 = scratch();
    let p = d4.join("template.yaml");
    std::fs::write(
        &p,
        read(&p).replace("- !Ref EchoFunction.Alias", "- !GetAtt EchoFunction.Arn"),
    )
    .unwrap();
    assert!(
        problems(&d4)
            .iter()
            .any(|p| p.starts_with("[invoke] the task role must have lambda:InvokeFunction on EchoFunction.Alias")),
        "{:?}",
        problems(&d4)
    );
    for d in [dir, d, d2, d3, d4] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The crates of `cargo tree -p <package> -e normal` (what a release build of it links), by name.
fn linked_crates(package: &str, features: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(root())
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none", "-p", package]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// What only embedded mode needs: an AWS build of a Lambda links none of it.
const EMBEDDED_ONLY: [&str; 3] = ["tollgate-embedded", "rusqlite", "libsqlite3-sys"];

#[test]
fn no_lambda_links_the_embedded_adapters_unless_asked_to() {
    let mut checked = 0;
    for f in registry::functions() {
        let manifest: toml::Value = toml::from_str(&read(&root().join(&f.package).join("Cargo.toml"))).unwrap();
        let package = manifest["package"]["name"].as_str().unwrap();
        let linked = linked_crates(package, &[]);
        let found: Vec<&str> = EMBEDDED_ONLY.iter().copied().filter(|c| linked.contains(*c)).collect();
        assert!(
            found.is_empty(),
            "{} ({package}) links {found:?} in its default build: put them behind its `embedded` feature",
            f.name
        );
        // Where the function has embedded mode, its feature is what brings the adapters in (so
        // the check above looks at the right names).
        if manifest.get("features").and_then(|t| t.get("embedded")).is_some() {
            let with = linked_crates(package, &["embedded"]);
            assert!(
                EMBEDDED_ONLY.iter().all(|c| with.contains(*c)),
                "{package} --features embedded should link {EMBEDDED_ONLY:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, registry::functions().len());
    // And the ingress, which runs embedded mode by default, does link them: the names are right.
    let ingress = linked_crates("tollgate-ingress", &[]);
    assert!(EMBEDDED_ONLY.iter().all(|c| ingress.contains(*c)), "{ingress:?}");
}
