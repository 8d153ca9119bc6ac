//! The deployment template's structure: every component the system needs is there and wired.
//!
//! - every `!Ref`, `!GetAtt`, `${...}` in `!Sub`, `!If` condition, `DependsOn` and mapping resolves;
//! - every Lambda is built by cargo-lambda from a real `[[bin]]`, and has its `events/` files;
//! - the task's environment is exactly the ingress's settings, and parses with the ingress's own
//!   settings reader; every function's environment parses with the reader its binary uses;
//! - the timing contract between ALB, target group, task and ingress holds;
//! - the network, load balancer, ECS, database, bucket, alarms and outputs are present with the
//!   properties the README promises.
//!
//! cfn-lint, `sam validate --lint` and checkov (in `.ci/run`) check the template against the
//! CloudFormation specification; this test checks it against the product.

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_aws::backends::ModeSettings;
use tollgate_core::backends::Mode;
use tollgate_core::reconcile::ReconcileSettings;
use tollgate_core::settings::SettingsReader;
use tollgate_ingress::config::IngressConfig;
use tollgate_ingress::routes::RouteTable;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Template {
    doc: Value,
}

/// An intrinsic function call: (`Ref` | `GetAtt` | `Sub` | ..., argument).
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_string(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".into(), arg))
            } else {
                k.strip_prefix("Fn::").map(|f| (f.to_string(), arg))
            }
        }
        _ => None,
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

impl Template {
    fn load() -> Self {
        let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
        Self {
            doc: serde_yaml::from_str(&text).unwrap(),
        }
    }

    fn section(&self, name: &str) -> BTreeMap<String, &Value> {
        self.doc
            .get(name)
            .and_then(Value::as_mapping)
            .map(|m| m.iter().map(|(k, v)| (s(k).to_string(), v)).collect())
            .unwrap_or_default()
    }

    fn resource(&self, name: &str) -> &Value {
        self.doc["Resources"]
            .get(name)
            .unwrap_or_else(|| panic!("no resource {name}"))
    }

    fn props(&self, name: &str) -> &Value {
        &self.resource(name)["Properties"]
    }

    fn of_type(&self, ty: &str) -> Vec<String> {
        self.section("Resources")
            .into_iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(ty))
            .map(|(n, _)| n)
            .collect()
    }

    fn parameter_default(&self, name: &str) -> String {
        let p = &self.doc["Parameters"][name];
        match &p["Default"] {
            Value::String(v) => v.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("parameter {name} has no usable default: {other:?}"),
        }
    }

    /// A value as the deployed stack would see it, with the parameters at their defaults, the
    /// pseudo parameters and attributes replaced by plausible stand-ins and `!If` taking its
    /// "true" branch (the production shape: image pushed, certificate given).
    fn eval(&self, v: &Value) -> Option<String> {
        match intrinsic(v) {
            None => match v {
                Value::String(x) => Some(x.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
            Some((f, arg)) => match f.as_str() {
                "Ref" => Some(self.ref_value(s(arg))),
                "GetAtt" => {
                    let (res, att) = getatt_parts(arg);
                    Some(format!("arn:aws:test:us-east-1:123456789012:{res}/{att}"))
                }
                "Sub" => {
                    let (text, vars) = match arg {
                        Value::Sequence(seq) => (s(&seq[0]).to_string(), Some(&seq[1])),
                        other => (s(other).to_string(), None),
                    };
                    let mut out = String::new();
                    let mut rest = text.as_str();
                    while let Some(i) = rest.find("${") {
                        out.push_str(&rest[..i]);
                        let end = rest[i..].find('}').unwrap() + i;
                        let name = &rest[i + 2..end];
                        let local = vars.and_then(|m| m.get(name)).and_then(|x| self.eval(x));
                        out.push_str(&local.unwrap_or_else(|| match name.split_once('.') {
                            Some((res, att)) => format!("arn:aws:test:us-east-1:123456789012:{res}/{att}"),
                            None => self.ref_value(name),
                        }));
                        rest = &rest[end + 1..];
                    }
                    out.push_str(rest);
                    Some(out)
                }
                "If" => self.eval(&arg[1]),
                "FindInMap" => {
                    let (map, k1, k2) = (self.eval(&arg[0])?, self.eval(&arg[1])?, self.eval(&arg[2])?);
                    self.eval(&self.doc["Mappings"][map.as_str()][k1.as_str()][k2.as_str()])
                }
                _ => None,
            },
        }
    }

    fn ref_value(&self, name: &str) -> String {
        match name {
            "AWS::StackName" => "tollgate-dev".into(),
            "AWS::Region" => "us-east-1".into(),
            "AWS::AccountId" => "123456789012".into(),
            "AWS::Partition" => "aws".into(),
            // An ALB's Ref is its ARN (TOLLGATE_ALB_OIDC_SIGNER_ARN parses it).
            "LoadBalancer" => {
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/tollgate-dev/0123456789abcdef"
                    .into()
            }
            _ if self.doc["Parameters"].get(name).is_some() => self.parameter_default(name),
            _ => format!("ref-{name}"),
        }
    }

    /// A SAM function's environment as name -> value.
    fn function_env(&self, function: &str) -> Vec<(String, String)> {
        self.props(function)["Environment"]["Variables"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (s(k).to_string(), self.eval(v).unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn container(&self) -> &Value {
        &self.props("TaskDefinition")["ContainerDefinitions"][0]
    }
}

fn getatt_parts(arg: &Value) -> (String, String) {
    match arg {
        Value::Sequence(seq) => (s(&seq[0]).to_string(), s(&seq[1]).to_string()),
        other => {
            let (r, a) = s(other).split_once('.').unwrap();
            (r.to_string(), a.to_string())
        }
    }
}

fn walk<'a>(v: &'a Value, visit: &mut dyn FnMut(&'a Value)) {
    visit(v);
    match v {
        Value::Sequence(seq) => seq.iter().for_each(|x| walk(x, visit)),
        Value::Mapping(m) => m.values().for_each(|x| walk(x, visit)),
        Value::Tagged(t) => walk(&t.value, visit),
        _ => {}
    }
}

fn number(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(x) => x.parse().unwrap(),
        other => panic!("not a number: {other:?}"),
    }
}

/// `Key`/`Value` attribute lists (load balancer, target group) as a map.
fn attributes(list: &Value) -> BTreeMap<String, &Value> {
    list.as_sequence()
        .unwrap()
        .iter()
        .map(|a| (s(&a["Key"]).to_string(), &a["Value"]))
        .collect()
}

#[test]
fn every_reference_resolves() {
    let t = Template::load();
    let resources = t.section("Resources");
    let parameters = t.section("Parameters");
    let conditions = t.section("Conditions");
    let mappings = t.section("Mappings");
    // SAM's generated attributes of a function with AutoPublishAlias.
    let sam_refs: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| r["Properties"].get("AutoPublishAlias").is_some())
        .flat_map(|(n, _)| [format!("{n}.Alias"), format!("{n}.Version")])
        .collect();
    let known_ref = |name: &str| {
        name.starts_with("AWS::")
            || resources.contains_key(name)
            || parameters.contains_key(name)
            || sam_refs.contains(name)
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    walk(&t.doc, &mut |v| {
        let Some((f, arg)) = intrinsic(v) else { return };
        checked += 1;
        match f.as_str() {
            "Ref" if !known_ref(s(arg)) => problems.push(format!("!Ref {}", s(arg))),
            "GetAtt" => {
                let (res, _) = getatt_parts(arg);
                if !resources.contains_key(&res) {
                    problems.push(format!("!GetAtt {res}"));
                }
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Value::Sequence(seq) => (s(&seq[0]), seq[1].as_mapping()),
                    other => (s(other), None),
                };
                for part in text.split("${").skip(1) {
                    let name = &part[..part.find('}').unwrap()];
                    if name.starts_with('!') || vars.is_some_and(|m| m.contains_key(name)) {
                        continue;
                    }
                    let head = name.split('.').next().unwrap();
                    if !(known_ref(name) || resources.contains_key(head)) {
                        problems.push(format!("${{{name}}} in !Sub"));
                    }
                }
            }
            "If" | "Condition" => {
                let c = if f == "If" { s(&arg[0]) } else { s(arg) };
                if !conditions.contains_key(c) {
                    problems.push(format!("condition {c}"));
                }
            }
            "FindInMap" if !mappings.contains_key(s(&arg[0])) => problems.push(format!("mapping {}", s(&arg[0]))),
            _ => {}
        }
    });
    for (name, r) in &resources {
        if let Some(c) = r.get("Condition") {
            if !conditions.contains_key(s(c)) {
                problems.push(format!("{name}: condition {}", s(c)));
            }
        }
        match r.get("DependsOn") {
            Some(Value::String(d)) if !resources.contains_key(d) => problems.push(format!("{name}: DependsOn {d}")),
            Some(Value::Sequence(ds)) => {
                for d in ds {
                    if !resources.contains_key(s(d)) {
                        problems.push(format!("{name}: DependsOn {}", s(d)));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(problems.is_empty(), "unresolved: {problems:#?}");
    assert!(
        checked > 200,
        "only {checked} intrinsic calls seen: is the walker reading the template?"
    );
}

#[test]
fn every_function_is_a_cargo_lambda_binary_with_events() {
    let t = Template::load();
    let functions = t.of_type("AWS::Serverless::Function");
    // Exactly the registry's functions (functions.toml; ingress/tests/registry.rs checks each piece).
    let registered: BTreeSet<String> = tollgate_ingress::registry::functions()
        .into_iter()
        .map(|f| f.template)
        .collect();
    assert_eq!(functions.iter().cloned().collect::<BTreeSet<_>>(), registered);
    let globals = &t.doc["Globals"]["Function"];
    assert_eq!(s(&globals["Runtime"]), "provided.al2023");
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    let mut binaries = BTreeSet::new();
    for f in &functions {
        let r = t.resource(f);
        assert_eq!(r["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{f}");
        let binary = s(&r["Metadata"]["BuildProperties"]["Binary"]).to_string();
        assert!(binaries.insert(binary.clone()), "{f}: binary {binary} used twice");
        // The binary is a [[bin]] of the package at CodeUri.
        let code = root().join(s(&r["Properties"]["CodeUri"]));
        let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(code.join("Cargo.toml")).unwrap()).unwrap();
        let bins: Vec<&str> = manifest["bin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert!(
            bins.contains(&binary.as_str()),
            "{f}: {binary} is not a [[bin]] of {}",
            code.display()
        );
        // Deployed as <stack>-<binary>: what TOLLGATE_FUNCTION_PREFIX + the route's name gives.
        assert_eq!(
            t.eval(&r["Properties"]["FunctionName"]).unwrap(),
            format!("tollgate-dev-{binary}"),
            "{f}"
        );
        // At least one events file, named after the binary (the functions' tests load them all).
        let events = tollgate_core::http_fn::event_files(&root().join("events"), &format!("{binary}-"));
        assert!(!events.is_empty(), "{f}: no events/{binary}-*.json");
        for (name, body) in events {
            serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Its own log group, with a retention.
        let group = intrinsic(&r["Properties"]["LoggingConfig"]["LogGroup"]).unwrap().1;
        let group = t.props(s(group));
        assert_eq!(
            t.eval(&group["LogGroupName"]).unwrap(),
            format!("/aws/lambda/tollgate-dev-{binary}")
        );
        assert!(group.get("RetentionInDays").is_some(), "{f}");
    }
    // Every function the routes and the ingress call is deployed and invokable by the task.
    let routes = RouteTable::load(&root().join("routes.toml")).unwrap();
    let invoked: BTreeSet<String> = t.container()["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|e| e["Name"] == "TOLLGATE_AUDIT_FUNCTION")
        .map(|e| s(&e["Value"]).to_string())
        .chain(routes.functions().into_iter().map(String::from))
        .collect();
    let statements = t.props("TaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    let invoke = statements
        .iter()
        .find(|st| st["Action"] == "lambda:InvokeFunction")
        .expect("the task role may invoke functions");
    let allowed: BTreeSet<String> = invoke["Resource"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| getatt_parts(intrinsic(r).unwrap().1).0)
        .map(|f| s(&t.resource(&f)["Metadata"]["BuildProperties"]["Binary"]).to_string())
        .collect();
    assert_eq!(allowed, invoked, "the task may invoke exactly the functions it calls");

    // The audit writer's failures land in a queue; the reconciler runs on a schedule.
    let writer = t.props("AuditWriterFunction");
    assert_eq!(
        s(&writer["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"]),
        "SQS"
    );
    assert!(number(&writer["EventInvokeConfig"]["MaximumEventAgeInSeconds"]) <= 21_600);
    let reconciler = t.props("AuditReconcilerFunction");
    assert_eq!(s(&reconciler["Events"]["Schedule"]["Type"]), "Schedule");
    // The schema is applied by db-migrate as a custom resource, re-run on each new version.
    let schema = t.props("DatabaseSchema");
    assert_eq!(intrinsic(&schema["ServiceToken"]).unwrap().1, "DbMigrateFunction.Alias");
    assert_eq!(
        intrinsic(&schema["MigratorVersion"]).unwrap().1,
        "DbMigrateFunction.Version"
    );
}

#[test]
fn the_task_environment_is_exactly_the_ingress_settings_and_parses() {
    if !cfg!(feature = "aws") {
        panic!("the task runs the ingress in aws mode: test it built with its aws feature (`cargo test --workspace` does; alone: cargo test -p tollgate-ingress --features aws)");
    }
    let t = Template::load();
    let env: Vec<(String, String)> = t.container()["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (s(&e["Name"]).to_string(), t.eval(&e["Value"]).unwrap()))
        .collect();
    let names: BTreeSet<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), env.len(), "a variable is set twice");

    let (config, docs) = IngressConfig::from_sources(env.clone(), Vec::new())
        .unwrap_or_else(|e| panic!("the task's environment does not parse: {e}"));
    let settings: BTreeSet<&str> = docs.iter().map(|d| d.env).collect();
    let ours: BTreeSet<&str> = names.iter().copied().filter(|n| n.starts_with("TOLLGATE_")).collect();
    assert_eq!(
        ours,
        settings,
        "task env vs ingress settings: missing {:?}, unknown {:?}",
        settings.difference(&ours).collect::<Vec<_>>(),
        ours.difference(&settings).collect::<Vec<_>>()
    );
    assert_eq!(
        names.difference(&settings).copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["MIMALLOC_ARENA_EAGER_COMMIT", "RUST_LOG"])
    );
    assert_eq!(config.mode.storage.mode, Mode::Aws);
    // The body budget is looked up by task size: every size the template allows has one, an
    // eighth of the task's memory.
    for memory in t.doc["Parameters"]["ContainerMemory"]["AllowedValues"]
        .as_sequence()
        .unwrap()
    {
        let mib = number(memory);
        let budget = &t.doc["Mappings"]["TaskMemory"][mib.to_string().as_str()]["BodyBudgetBytes"];
        assert_eq!(
            t.eval(budget),
            Some((mib * 1024 * 1024 / 8).to_string()),
            "TaskMemory {mib}"
        );
    }
    let aws_settings = ModeSettings::read(&mut SettingsReader::new(env.clone(), Vec::new()));
    let aws = aws_settings.aws.as_ref().unwrap();
    assert_eq!(aws.function_prefix, "tollgate-dev-");
    assert!(
        aws.s3.kms_key_id.is_some(),
        "audit objects are written with the stack's KMS key"
    );
    assert!(
        config.reconcile_interval.is_zero(),
        "the scheduled function reconciles, not the tasks"
    );
    assert_eq!(config.routes_file, Path::new("/etc/tollgate/routes.toml"));

    // Timing contract: ALB idle < ingress keep-alive; drain and deregistration < stop timeout.
    let container = t.container();
    let stop = Duration::from_secs(number(&container["StopTimeout"]));
    let alb = attributes(&t.props("LoadBalancer")["LoadBalancerAttributes"]);
    let alb_idle = Duration::from_secs(number(alb["idle_timeout.timeout_seconds"]));
    let tg = t.props("TargetGroup");
    let tg_attrs = attributes(&tg["TargetGroupAttributes"]);
    let deregistration = Duration::from_secs(number(tg_attrs["deregistration_delay.timeout_seconds"]));
    assert!(
        config.limits.keepalive_idle > alb_idle,
        "keep-alive must outlast the ALB idle timeout"
    );
    assert!(
        deregistration < stop,
        "deregistration delay must be under the stop timeout"
    );
    // The true worst case after SIGTERM: the drain, the cut-off answers, the last group commit
    // (its budget plus one attempt timeout: the one retry policy makes that the bound), and
    // one more such window for records kept through an outage; all before SIGKILL.
    let commit = config.recorder.commit_retry + tollgate_aws::sdk::RDS_DATA_ATTEMPT_TIMEOUT;
    let worst = config.drain_timeout + tollgate_ingress::server::CLOSE_GRACE + 2 * commit;
    assert!(
        worst < stop,
        "worst-case shutdown {worst:?} must end before SIGKILL at {stop:?}"
    );
    assert!(stop <= Duration::from_secs(120), "Fargate's largest stop timeout");
    assert_eq!(s(&tg["HealthCheckPath"]), "/healthz");
    // One port everywhere: listener setting, container, target group, Dockerfile.
    assert_eq!(config.listen.port(), 8080);
    assert_eq!(number(&container["PortMappings"][0]["ContainerPort"]), 8080);
    assert_eq!(number(&tg["Port"]), 8080);
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.lines().any(|l| l.trim() == "EXPOSE 8080"));
    // The task runs as the image's non-root user, from the image's routes file.
    let user = s(&container["User"]);
    assert!(
        dockerfile.lines().any(|l| l.trim() == format!("USER {user}")),
        "USER {user}"
    );
    assert!(dockerfile.contains("/etc/tollgate/routes.toml"));
    assert!(!user.starts_with("0:") && user != "root");
    assert_eq!(container["ReadonlyRootFilesystem"], Value::Bool(true));
    let logs = &container["LogConfiguration"];
    assert_eq!(s(&logs["LogDriver"]), "awslogs");
    assert_eq!(
        s(&t.props("TaskDefinition")["RuntimePlatform"]["CpuArchitecture"]),
        "ARM64"
    );
}

#[test]
fn every_function_environment_parses_with_its_binary_settings() {
    let t = Template::load();
    for f in t.of_type("AWS::Serverless::Function") {
        let env = t.function_env(&f);
        if env.is_empty() {
            continue; // echo reads no settings
        }
        let mut reader = SettingsReader::new(env.clone(), Vec::new());
        let mode = ModeSettings::read(&mut reader);
        if f == "AuditReconcilerFunction" {
            let settings = ReconcileSettings::read(&mut reader);
            assert_eq!(settings.audit_function, "audit-writer");
            // The tasks and the scheduled function agree on what they share; the shipped routes
            // fit inside the intent grace with the tasks' commit budget.
            let task_env: Vec<(String, String)> = t.container()["Environment"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|e| (s(&e["Name"]).to_string(), t.eval(&e["Value"]).unwrap()))
                .collect();
            let (task, _) = IngressConfig::from_sources(task_env, Vec::new()).unwrap();
            assert_eq!(
                format!("{:?}", task.reconcile),
                format!("{settings:?}"),
                "tasks vs reconciler"
            );
            let routes = tollgate_ingress::routes::RouteTable::load(&root().join("routes.toml")).unwrap();
            assert_eq!(
                routes.write_ahead_problems(task.reconcile.intent_grace, task.recorder.commit_retry),
                Vec::<String>::new()
            );
            // The alarms read the metrics the function publishes.
            for metric in ["AuditRowsSetAside", "IntentsFinalized"] {
                let alarm = t
                    .of_type("AWS::CloudWatch::Alarm")
                    .into_iter()
                    .find(|a| s(&t.props(a)["MetricName"]) == metric)
                    .unwrap_or_else(|| panic!("no alarm on {metric}"));
                let props = t.props(&alarm);
                assert_eq!(s(&props["Namespace"]), tollgate_audit_reconciler::METRIC_NAMESPACE);
                assert_eq!(
                    t.eval(&props["Dimensions"][0]["Value"]),
                    Some(t.ref_value(&f)),
                    "{alarm}"
                );
                assert_eq!(s(&props["Dimensions"][0]["Name"]), "FunctionName");
            }
            assert_eq!(mode.aws.as_ref().unwrap().function_prefix, "tollgate-dev-");
        }
        if f == "AuditDigestFunction" {
            // The function and the tasks (whose timer runs in embedded mode only) agree on
            // the digests' period, grace and lookback.
            let settings = tollgate_core::digest::DigestSettings::read(&mut reader);
            let task_env: Vec<(String, String)> = t.container()["Environment"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|e| (s(&e["Name"]).to_string(), t.eval(&e["Value"]).unwrap()))
                .collect();
            let (task, _) = IngressConfig::from_sources(task_env, Vec::new()).unwrap();
            assert_eq!(
                format!("{:?}", task.digest),
                format!("{settings:?}"),
                "tasks vs digest function"
            );
            assert!(settings.period >= std::time::Duration::from_secs(60), "{settings:?}");
        }
        let docs = reader.finish().unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(mode.storage.mode, Mode::Aws, "{f}");
        let known: BTreeSet<&str> = docs.iter().map(|d| d.env).collect();
        for (name, _) in &env {
            // AWS_ENDPOINT_URL_*: read by the AWS SDK itself (declared only for sam local invoke).
            if name.starts_with("AWS_ENDPOINT_URL_") {
                continue;
            }
            assert!(known.contains(name.as_str()), "{f}: {name} is read by nothing");
        }
    }
}

#[test]
fn the_infrastructure_components_are_present() {
    let t = Template::load();
    let count = |ty: &str| t.of_type(ty).len();
    // Network: 2 AZs, public + private, NAT by parameter, endpoints by parameter.
    assert_eq!(count("AWS::EC2::VPC"), 1);
    assert_eq!(count("AWS::EC2::Subnet"), 4);
    for (a, b) in [("PublicSubnetA", "PublicSubnetB"), ("PrivateSubnetA", "PrivateSubnetB")] {
        assert_ne!(t.props(a)["AvailabilityZone"], t.props(b)["AvailabilityZone"]);
    }
    assert_eq!(count("AWS::EC2::NatGateway"), 2);
    assert_eq!(t.resource("NatGatewayB")["Condition"], "NatPerAz");
    let endpoints: BTreeSet<String> = t
        .of_type("AWS::EC2::VPCEndpoint")
        .iter()
        .map(|e| {
            let name = t.eval(&t.props(e)["ServiceName"]).unwrap();
            name.rsplit_once("us-east-1.").unwrap().1.to_string()
        })
        .collect();
    for service in ["s3", "lambda", "rds-data", "ecr.api", "ecr.dkr", "logs"] {
        assert!(endpoints.contains(service), "no {service} endpoint: {endpoints:?}");
    }
    // Security groups: the tasks take traffic only from the ALB; the database from nobody.
    let task_ingress = t.props("TaskIngressFromLoadBalancer");
    assert_eq!(
        intrinsic(&task_ingress["SourceSecurityGroupId"]).unwrap().1,
        "LoadBalancerSecurityGroup"
    );
    assert!(t.props("TaskSecurityGroup").get("SecurityGroupIngress").is_none());
    assert!(t.props("DatabaseSecurityGroup").get("SecurityGroupIngress").is_none());
    // ALB: HTTP always, HTTPS + redirect with a certificate.
    assert_eq!(t.resource("HttpsListener")["Condition"], "HasCertificate");
    let http_actions = &t.props("HttpListener")["DefaultActions"];
    assert_eq!(s(&intrinsic(http_actions).unwrap().1[1][0]["Type"]), "redirect");
    // ECR: scan on push, keep 10.
    let repo = t.props("Repository");
    assert_eq!(repo["ImageScanningConfiguration"]["ScanOnPush"], Value::Bool(true));
    let lifecycle: serde_json::Value =
        serde_json::from_str(s(&repo["LifecyclePolicy"]["LifecyclePolicyText"])).unwrap();
    assert_eq!(lifecycle["rules"][0]["selection"]["countNumber"], 10);
    // ECS: Container Insights, both capacity providers, circuit breaker with rollback, scaling.
    assert_eq!(s(&t.props("Cluster")["ClusterSettings"][0]["Value"]), "enabled");
    let providers = &t.props("ClusterCapacityProviders")["CapacityProviders"];
    assert_eq!(providers.as_sequence().unwrap().len(), 2);
    let service = t.props("Service");
    let breaker = &service["DeploymentConfiguration"]["DeploymentCircuitBreaker"];
    assert_eq!(
        (&breaker["Enable"], &breaker["Rollback"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(
        s(&service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"]),
        "DISABLED"
    );
    let metrics: BTreeSet<String> = t
        .of_type("AWS::ApplicationAutoScaling::ScalingPolicy")
        .iter()
        .map(|p| {
            let spec = &t.props(p)["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"];
            s(&spec["PredefinedMetricType"]).to_string()
        })
        .collect();
    assert_eq!(
        metrics,
        BTreeSet::from([
            "ALBRequestCountPerTarget".to_string(),
            "ECSServiceAverageCPUUtilization".to_string()
        ])
    );
    // Aurora Serverless v2 with the Data API, a managed secret, encryption, backups.
    let db = t.props("DatabaseCluster");
    for key in ["EnableHttpEndpoint", "ManageMasterUserPassword", "StorageEncrypted"] {
        assert_eq!(db[key], Value::Bool(true), "{key}");
    }
    assert_eq!(t.parameter_default("DbMinCapacity"), "0");
    assert!(db["ServerlessV2ScalingConfiguration"].get("MinCapacity").is_some());
    assert_eq!(s(&t.props("DatabaseWriter")["DBInstanceClass"]), "db.serverless");
    assert_eq!(s(&intrinsic(&db["DeletionProtection"]).unwrap().1[0]), "IsProd");
    // The audit bucket: KMS, no public access, owner-enforced, versioned, expiring, logged,
    // TLS only and create-only.
    let bucket = t.props("AuditBucket");
    assert_eq!(
        s(
            &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
                ["SSEAlgorithm"]
        ),
        "aws:kms"
    );
    let block = &bucket["PublicAccessBlockConfiguration"];
    assert!(block.as_mapping().unwrap().values().all(|v| *v == Value::Bool(true)));
    assert_eq!(
        s(&bucket["OwnershipControls"]["Rules"][0]["ObjectOwnership"]),
        "BucketOwnerEnforced"
    );
    assert_eq!(s(&bucket["VersioningConfiguration"]["Status"]), "Enabled");
    let expiry = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(intrinsic(&expiry["ExpirationInDays"]).unwrap().1, "AuditRetentionDays");
    assert!(expiry.get("NoncurrentVersionExpiration").is_some());
    assert_eq!(t.parameter_default("AuditRetentionDays"), "90");
    assert!(bucket.get("LoggingConfiguration").is_some());
    assert_eq!(
        s(&intrinsic(&bucket["ObjectLockConfiguration"]).unwrap().1[0]),
        "UseObjectLock"
    );
    let policy = serde_json::to_string(&t.props("AuditBucketPolicy")["PolicyDocument"]).unwrap();
    assert!(
        policy.contains("aws:SecureTransport") && policy.contains("s3:if-none-match"),
        "{policy}"
    );
    // Alarms on what the README promises, all to the topic.
    let alarms: BTreeSet<String> = t
        .of_type("AWS::CloudWatch::Alarm")
        .iter()
        .map(|a| s(&t.props(a)["MetricName"]).to_string())
        .collect();
    for metric in [
        "HTTPCode_ELB_5XX_Count",
        "HTTPCode_Target_5XX_Count",
        "UnHealthyHostCount",
        "Errors",
        "ApproximateNumberOfMessagesVisible",
        "AsyncEventsDropped",
    ] {
        assert!(alarms.contains(metric), "no alarm on {metric}");
    }
    // Every log group has a retention.
    for g in t.of_type("AWS::Logs::LogGroup") {
        assert!(t.props(&g).get("RetentionInDays").is_some(), "{g}");
    }
    // Outputs operators need.
    let outputs = t.section("Outputs");
    for o in ["ApiUrl", "RepositoryUri", "AuditBucketName", "DatabaseClusterArn"] {
        assert!(outputs.contains_key(o), "no output {o}");
    }
}

#[test]
fn samconfig_has_dev_and_prod_with_parameters_the_template_declares() {
    let t = Template::load();
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("samconfig.toml")).unwrap()).unwrap();
    let mut stacks = BTreeSet::new();
    for env in ["default", "prod"] {
        let c = &config[env];
        stacks.insert(c["global"]["parameters"]["stack_name"].as_str().unwrap().to_string());
        let deploy = &c["deploy"]["parameters"];
        let global = &c["global"]["parameters"];
        assert_eq!(deploy["resolve_s3"].as_bool(), Some(true), "{env}");
        assert!(
            deploy["capabilities"].as_str().unwrap().contains("CAPABILITY_IAM"),
            "{env}"
        );
        // A cached build is keyed on the function's CodeUri (its package) and misses a change
        // to the shared crates it links: never cached on the deploy path.
        assert_ne!(
            c["build"]["parameters"].get("cached").and_then(|v| v.as_bool()),
            Some(true),
            "{env}: cached sam build"
        );
        assert!(
            deploy.get("parameter_overrides").is_none(),
            "{env}: overrides are global, shared by build, deploy and sync"
        );
        assert_eq!(c["build"]["parameters"]["parallel"].as_bool(), Some(true), "{env}");
        assert_eq!(c["validate"]["parameters"]["lint"].as_bool(), Some(true), "{env}");
        for pair in global["parameter_overrides"].as_str().unwrap().split_whitespace() {
            let (name, value) = pair.split_once('=').unwrap();
            let p = &t.doc["Parameters"][name];
            assert!(p.is_mapping(), "{env}: {name} is not a template parameter");
            if p["Type"] == "Number" {
                let n: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{env}: {name}={value} is not a number"));
                if let Some(min) = p.get("MinValue").and_then(Value::as_f64) {
                    assert!(n >= min, "{env}: {name}={value} under {min}");
                }
                if let Some(max) = p.get("MaxValue").and_then(Value::as_f64) {
                    assert!(n <= max, "{env}: {name}={value} over {max}");
                }
            }
            if let Some(allowed) = p.get("AllowedValues").and_then(Value::as_sequence) {
                let allowed: Vec<String> = allowed.iter().map(|a| t.eval(a).unwrap()).collect();
                assert!(
                    allowed.iter().any(|a| a == value),
                    "{env}: {name}={value} not in {allowed:?}"
                );
            }
        }
    }
    assert_eq!(stacks.len(), 2, "dev and prod must be different stacks");
}

#[test]
fn the_operations_doc_says_what_each_alarm_means() {
    let t = Template::load();
    let alarms: BTreeSet<String> = t.of_type("AWS::CloudWatch::Alarm").into_iter().collect();
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| {
            l.strip_prefix("| `")?
                .split_once("Alarm` |")
                .map(|(name, _)| format!("{name}Alarm"))
        })
        .collect();
    assert_eq!(
        documented, alarms,
        "docs/operations.md's alarm table vs template.yaml's alarms"
    );
}

/// A value or a list of them (IAM `Action`/`Resource`, `DependsOn`) as a list.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(seq) => seq.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

impl Template {
    /// The IAM statements of a role (`AWS::IAM::Role` inline policies) or of a SAM function
    /// (`Policies` statements).
    fn statements(&self, holder: &str) -> Vec<&Value> {
        let props = self.props(holder);
        // No Policies: no grants (SAM gives a function only its logging permissions).
        props["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|p| {
                let doc = if p.get("PolicyDocument").is_some() {
                    &p["PolicyDocument"]
                } else {
                    p
                };
                doc["Statement"].as_sequence().into_iter().flatten()
            })
            .collect()
    }

    /// `(action, evaluated resource)` for every Allow of a role or function.
    fn grants(&self, holder: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for st in self.statements(holder) {
            assert_eq!(s(&st["Effect"]), "Allow", "{holder}: only Allow statements");
            for action in one_or_many(&st["Action"]) {
                for resource in one_or_many(&st["Resource"]) {
                    out.push((s(action).to_string(), self.eval(resource).unwrap()));
                }
            }
        }
        out
    }
}

/// The logs archived to S3: the ingress's container logs and the logs of the audit path (the
/// audit writer and the scheduled functions), as the hourly export took them before.
fn archived_log_groups(t: &Template) -> BTreeSet<String> {
    use tollgate_ingress::registry::Kind;
    let mut groups = BTreeSet::from(["IngressLogGroup".to_string()]);
    for f in tollgate_ingress::registry::functions() {
        if matches!(f.kind, Kind::AuditWriter | Kind::Scheduled) {
            let group = intrinsic(&t.props(&f.template)["LoggingConfig"]["LogGroup"]).unwrap().1;
            groups.insert(s(group).to_string());
        }
    }
    groups
}

#[test]
fn every_archived_log_group_is_subscribed_to_the_archive_stream() {
    let t = Template::load();
    let getatt = |v: &Value| {
        let (f, arg) = intrinsic(v).unwrap_or_else(|| panic!("not an intrinsic: {v:?}"));
        assert_eq!(f, "GetAtt");
        getatt_parts(arg)
    };
    let mut subscribed = BTreeSet::new();
    for filter in t.of_type("AWS::Logs::SubscriptionFilter") {
        let p = t.props(&filter);
        assert_eq!(
            getatt(&p["DestinationArn"]),
            ("LogArchiveStream".into(), "Arn".into()),
            "{filter}"
        );
        assert_eq!(
            getatt(&p["RoleArn"]),
            ("LogsToFirehoseRole".into(), "Arn".into()),
            "{filter}"
        );
        assert_eq!(s(&p["FilterPattern"]), "", "{filter}: every event is archived");
        let (f, group) = intrinsic(&p["LogGroupName"]).unwrap();
        assert_eq!(f, "Ref", "{filter}");
        assert!(
            subscribed.insert(s(group).to_string()),
            "{filter}: {group:?} subscribed twice"
        );
    }
    let archived = archived_log_groups(&t);
    assert_eq!(
        subscribed,
        archived,
        "log groups without a subscription to the archive: {:?}; subscribed but not archived: {:?}",
        archived.difference(&subscribed).collect::<Vec<_>>(),
        subscribed.difference(&archived).collect::<Vec<_>>()
    );

    // The stream: written by CloudWatch Logs (DirectPut), delivered to the log bucket by day,
    // records left as CloudWatch Logs gzipped them (Firehose compressing again would double it).
    let stream = t.props("LogArchiveStream");
    assert_eq!(s(&stream["DeliveryStreamType"]), "DirectPut");
    assert!(stream.get("DeliveryStreamEncryptionConfigurationInput").is_some());
    let s3 = &stream["ExtendedS3DestinationConfiguration"];
    assert_eq!(getatt(&s3["BucketARN"]).0, "LogBucket");
    assert_eq!(getatt(&s3["RoleARN"]).0, "FirehoseRole");
    let prefix = s(&s3["Prefix"]);
    assert!(
        prefix.starts_with("cloudwatch-logs/") && prefix.contains("!{timestamp:yyyy/MM/dd}"),
        "{prefix}"
    );
    // An expression in the prefix requires an error output prefix (Firehose, s3-prefixes.html).
    let errors = s(&s3["ErrorOutputPrefix"]);
    assert!(
        errors.starts_with("cloudwatch-logs-errors/") && errors.contains("!{firehose:error-output-type}"),
        "{errors}"
    );
    assert_eq!(s(&s3["CompressionFormat"]), "UNCOMPRESSED");
    assert!(s3.get("ProcessingConfiguration").is_none(), "records stay gzipped");
    assert_eq!(s3["CloudWatchLoggingOptions"]["Enabled"], Value::Bool(true));
    // The error log group is encrypted like every other.
    assert!(t.props("LogArchiveErrorLogGroup").get("KmsKeyId").is_some());

    // Least privilege. CloudWatch Logs' role: trusted by logs.amazonaws.com from this account's
    // log groups only, and it may only put records into this stream.
    let trust = |role: &str| t.props(role)["AssumeRolePolicyDocument"]["Statement"][0].clone();
    let logs_trust = trust("LogsToFirehoseRole");
    assert_eq!(s(&logs_trust["Principal"]["Service"]), "logs.amazonaws.com");
    assert_eq!(
        t.eval(&logs_trust["Condition"]["StringEquals"]["aws:SourceAccount"])
            .as_deref(),
        Some("123456789012")
    );
    assert_eq!(
        t.eval(&logs_trust["Condition"]["StringLike"]["aws:SourceArn"])
            .as_deref(),
        Some("arn:aws:logs:us-east-1:123456789012:*")
    );
    let stream_arn = t
        .eval(&serde_yaml::from_str("!GetAtt LogArchiveStream.Arn").unwrap())
        .unwrap();
    let grants = t.grants("LogsToFirehoseRole");
    let expected: Vec<(String, String)> = ["firehose:PutRecord", "firehose:PutRecordBatch"]
        .iter()
        .map(|a| (a.to_string(), stream_arn.clone()))
        .collect();
    assert_eq!(grants, expected, "LogsToFirehoseRole");
    // Firehose's role: trusted by Firehose for this account; S3 on the log bucket and its archive
    // prefixes, its own error log; nothing else, no wildcard resource.
    let firehose_trust = trust("FirehoseRole");
    assert_eq!(s(&firehose_trust["Principal"]["Service"]), "firehose.amazonaws.com");
    assert_eq!(
        t.eval(&firehose_trust["Condition"]["StringEquals"]["sts:ExternalId"])
            .as_deref(),
        Some("123456789012")
    );
    let bucket = "arn:aws:test:us-east-1:123456789012:LogBucket/Arn";
    let error_log = "arn:aws:test:us-east-1:123456789012:LogArchiveErrorLogGroup/Arn:*";
    for (action, resource) in t.grants("FirehoseRole") {
        let allowed = match action.as_str() {
            "s3:GetBucketLocation" | "s3:ListBucket" | "s3:ListBucketMultipartUploads" => resource == bucket,
            "s3:PutObject" | "s3:GetObject" | "s3:AbortMultipartUpload" => {
                resource == format!("{bucket}/cloudwatch-logs/*")
                    || resource == format!("{bucket}/cloudwatch-logs-errors/*")
            }
            "logs:PutLogEvents" => resource == error_log,
            _ => false,
        };
        assert!(allowed, "FirehoseRole may not {action} on {resource}");
    }
    // Its delivery is alarmed.
    let alarm = t.props("LogArchiveDeliveryAlarm");
    assert_eq!(s(&alarm["Namespace"]), "AWS/Firehose");
    assert_eq!(s(&alarm["MetricName"]), "DeliveryToS3.DataFreshness");
    assert_eq!(
        intrinsic(&alarm["Dimensions"][0]["Value"]).unwrap().1,
        "LogArchiveStream"
    );
    // And nothing is left of the hourly export.
    let policy = serde_json::to_string(&t.props("LogBucketPolicy")["PolicyDocument"]).unwrap();
    assert!(
        !policy.contains("logs.us-east-1") && !policy.contains("logs.${AWS::Region}"),
        "{policy}"
    );
}

// ---- IAM coverage ----------------------------------------------------------------------------

/// Source of `path` without its `#[cfg(test)]` module (test code calls ports on fakes).
fn source_without_tests(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// `file`'s path from the repository's root (`core/src/translog.rs`).
fn repo_path(file: &Path) -> String {
    file.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .replace("/../", "/")
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The AWS SDK operations each port method of an adapter reaches: the fluent-builder calls
/// (`.execute_statement()`, `.put_object()`, ...) in each `fn` of the file, followed through the
/// file's own helper functions.
fn adapter_operations(file: &str, sdk_ops: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let text = source_without_tests(&root().join(file));
    // Split into functions: every `fn name` starts one; its body runs to the next.
    let mut bodies: Vec<(String, String)> = Vec::new();
    for part in text.split("fn ").skip(1) {
        let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        bodies.push((name, part.to_string()));
    }
    let names: BTreeSet<String> = bodies.iter().map(|(n, _)| n.clone()).collect();
    let mut direct: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (name, body) in &bodies {
        let entry = direct.entry(name.clone()).or_default();
        for op in sdk_ops {
            if body.contains(&format!(".{op}()")) {
                entry.0.insert(op.to_string());
            }
        }
        for callee in &names {
            if callee != name && (body.contains(&format!("self.{callee}(")) || body.contains(&format!(" {callee}("))) {
                entry.1.insert(callee.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for name in direct.keys() {
        let mut ops = BTreeSet::new();
        let mut seen = BTreeSet::from([name.clone()]);
        let mut todo = vec![name.clone()];
        while let Some(n) = todo.pop() {
            let (o, calls) = &direct[&n];
            ops.extend(o.iter().cloned());
            for c in calls {
                if seen.insert(c.clone()) {
                    todo.push(c.clone());
                }
            }
        }
        out.insert(name.clone(), ops);
    }
    out
}

/// The AWS SDK operations the code calls, what IAM action each needs and on which resource of
/// the template (`None`: the resource is checked by a test of its own), with the documented
/// cross-service needs:
/// - every Data API call is authorized against the cluster and reads the database secret with the
///   caller's credentials ("Authorizing access to RDS Data API", Aurora user guide,
///   data-api.access.html: the policy needs `secretsmanager:GetSecretValue` on the secret); the
///   secret RDS manages is encrypted with the Secrets Manager AWS managed key, which needs no
///   grant;
/// - an object put with SSE-KMS needs `kms:GenerateDataKey`, a get `kms:Decrypt` on the key ("To
///   upload an object encrypted with an AWS KMS key, you need kms:GenerateDataKey ... to download
///   it, kms:Decrypt", S3 user guide, UsingKMSEncryption.html);
/// - `HeadObject` is authorized as `s3:GetObject`, `ListObjectsV2` as `s3:ListBucket` on the
///   bucket (S3 API reference).
///
/// `file` is the source file (from the repository's root) that makes the call: a put goes where
/// [`OBJECTS_PUT_BY`] says that file writes.
fn iam_needs(op: &str, holder: &str, file: &str) -> Vec<(&'static str, Option<&'static str>)> {
    let cluster = Some("arn:aws:test:us-east-1:123456789012:DatabaseCluster/DBClusterArn");
    let secret = Some(database_secret(holder));
    let objects = Some(AUDIT_OBJECTS);
    let key = Some("arn:aws:test:us-east-1:123456789012:AuditKey/Arn");
    match op {
        "execute_statement" => vec![
            ("rds-data:ExecuteStatement", cluster),
            ("secretsmanager:GetSecretValue", secret),
        ],
        "batch_execute_statement" => vec![
            ("rds-data:BatchExecuteStatement", cluster),
            ("secretsmanager:GetSecretValue", secret),
        ],
        "begin_transaction" => vec![
            ("rds-data:BeginTransaction", cluster),
            ("secretsmanager:GetSecretValue", secret),
        ],
        "commit_transaction" => vec![
            ("rds-data:CommitTransaction", cluster),
            ("secretsmanager:GetSecretValue", secret),
        ],
        "rollback_transaction" => vec![
            ("rds-data:RollbackTransaction", cluster),
            ("secretsmanager:GetSecretValue", secret),
        ],
        "put_object" => {
            let Some((_, written)) = OBJECTS_PUT_BY.iter().find(|(f, _)| *f == file) else {
                panic!("{file} puts objects: add what it writes to OBJECTS_PUT_BY");
            };
            vec![("s3:PutObject", Some(*written)), ("kms:GenerateDataKey", key)]
        }
        "get_object" | "head_object" => vec![("s3:GetObject", objects), ("kms:Decrypt", key)],
        "list_objects_v2" => vec![(
            "s3:ListBucket",
            Some("arn:aws:test:us-east-1:123456789012:AuditBucket/Arn"),
        )],
        // The log key (the KMS signer, when its adapter is mapped above): Sign with the key's
        // own algorithm, GetPublicKey for the verifier key and receipt certificates.
        "sign" => vec![("kms:Sign", Some("arn:aws:test:us-east-1:123456789012:LogKey/Arn"))],
        "get_public_key" => vec![(
            "kms:GetPublicKey",
            Some("arn:aws:test:us-east-1:123456789012:LogKey/Arn"),
        )],
        // Which functions a component may invoke is checked by
        // every_function_is_a_cargo_lambda_binary_with_events (exactly those it calls).
        "invoke" => vec![("lambda:InvokeFunction", None)],
        other => panic!("no IAM mapping for the SDK operation {other}: add it to iam_needs"),
    }
}

/// The audit objects, in the audit bucket.
const AUDIT_OBJECTS: &str = "arn:aws:test:us-east-1:123456789012:AuditBucket/Arn/audit/*";

/// The objects each source file that puts objects writes: the audit writer the audit objects;
/// the integrator the log's tiles and checkpoints (`log/`), the digester the digests
/// (`digest/`), both in the trail bucket.
const OBJECTS_PUT_BY: [(&str, &str); 3] = [
    ("functions/audit-writer/src/lib.rs", AUDIT_OBJECTS),
    (
        "core/src/translog.rs",
        "arn:aws:test:us-east-1:123456789012:TrailBucket/Arn/log/*",
    ),
    (
        "core/src/digest.rs",
        "arn:aws:test:us-east-1:123456789012:TrailBucket/Arn/digest/*",
    ),
];

/// The database secret (the role it logs in as) of each component: the master secret is
/// db-migrate's alone; requests-api reads as the reader role, the rest write as the writer role.
fn database_secret(holder: &str) -> &'static str {
    match holder {
        "DbMigrateFunction" => "arn:aws:test:us-east-1:123456789012:DatabaseCluster/MasterUserSecret.SecretArn",
        "RequestsApiFunction" => "ref-ReaderDbSecret",
        _ => "ref-WriterDbSecret",
    }
}

/// Each deployed component: the role that signs its calls and the sources it runs (the crate's
/// own, plus the core modules that call ports for it).
const COMPONENTS: [(&str, &[&str]); 7] = [
    // The ingress task: recorder, handler, and core's reconciler (linked for embedded mode).
    ("TaskRole", &["ingress/src", "core/src/reconcile.rs"]),
    ("EchoFunction", &["functions/echo/src"]),
    ("RequestsApiFunction", &["functions/requests-api/src"]),
    ("AuditWriterFunction", &["functions/audit-writer/src"]),
    (
        "AuditReconcilerFunction",
        &["functions/audit-reconciler/src", "core/src/reconcile.rs"],
    ),
    ("DbMigrateFunction", &["functions/db-migrate/src"]),
    (
        "AuditDigestFunction",
        &[
            "functions/audit-digest/src",
            "core/src/translog.rs",
            "core/src/digest.rs",
        ],
    ),
];

#[test]
fn every_aws_call_the_code_makes_is_granted_to_the_role_that_makes_it() {
    let t = Template::load();
    // The adapters, their ports and the SDK operations each client offers that the code may call.
    let adapters: [(&str, &str, &[&str]); 4] = [
        (
            "aws/src/dataapi.rs",
            "log",
            &[
                "execute_statement",
                "batch_execute_statement",
                "begin_transaction",
                "commit_transaction",
                "rollback_transaction",
            ],
        ),
        (
            "aws/src/s3.rs",
            "store",
            &["put_object", "get_object", "head_object", "list_objects_v2"],
        ),
        ("aws/src/lambda.rs", "invoker", &["invoke"]),
        // The transparency log's signer: GetPublicKey once at start, Sign per checkpoint.
        ("aws/src/kms.rs", "signer", &["get_public_key", "sign"]),
    ];
    // Every SDK call of the workspace is in one of those adapters: a `.send()` anywhere else is
    // a call this test does not see.
    for dir in ["aws/src", "core/src", "ingress/src", "functions"] {
        for file in rust_files(&root().join(dir)) {
            let rel = repo_path(&file);
            let text = source_without_tests(&file);
            if text.contains(".send()")
                && !adapters.iter().any(|(a, _, _)| rel.ends_with(a))
                && !rel.contains("/tests/")
            {
                panic!("{rel} makes SDK calls outside the adapters this test maps");
            }
        }
    }
    let mut port_ops: Vec<(&str, BTreeMap<String, BTreeSet<String>>)> = Vec::new();
    let mut all_ops = BTreeSet::new();
    for (file, receiver, ops) in adapters {
        let methods = adapter_operations(file, ops);
        for o in methods.values().flatten() {
            all_ops.insert(o.clone());
        }
        port_ops.push((receiver, methods));
    }
    for op in [
        "execute_statement",
        "begin_transaction",
        "commit_transaction",
        "put_object",
        "get_object",
        "invoke",
    ] {
        assert!(
            all_ops.contains(op),
            "the scan found no {op}: is it reading the adapters?"
        );
    }
    // Port methods with a name of their own are found by name; the shared names (`get`, `query`,
    // `list`, `invoke`) only on their receiver (`log.`, `store.`, `invoker.`).
    let registered: BTreeSet<String> = tollgate_ingress::registry::functions()
        .into_iter()
        .map(|f| f.template)
        .collect();
    let components: BTreeSet<String> = COMPONENTS.iter().map(|(c, _)| c.to_string()).collect();
    assert!(
        registered.is_subset(&components),
        "functions without an IAM coverage entry: {:?}",
        registered.difference(&components).collect::<Vec<_>>()
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for (holder, sources) in COMPONENTS {
        let grants = t.grants(holder);
        // File by file: what a call needs can depend on the file that makes it (the bucket a
        // put lands in).
        for file in sources.iter().flat_map(|s| rust_files(&root().join(s))) {
            let rel = repo_path(&file);
            let text = source_without_tests(&file);
            let mut ops = BTreeSet::new();
            for (receiver, methods) in &port_ops {
                for (method, method_ops) in methods {
                    let unique = port_ops.iter().filter(|(_, m)| m.contains_key(method)).count() == 1
                        && !["get", "query", "list", "invoke", "new", "send", "fmt"].contains(&method.as_str());
                    let called = if unique {
                        text.contains(&format!(".{method}("))
                    } else {
                        text.contains(&format!("{receiver}.{method}("))
                    };
                    if called {
                        ops.extend(method_ops.iter().cloned());
                    }
                }
            }
            for op in &ops {
                for (action, resource) in iam_needs(op, holder, &rel) {
                    checked += 1;
                    let granted = grants
                        .iter()
                        .any(|(a, r)| a == action && resource.is_none_or(|want| r == want));
                    if !granted {
                        problems.push(format!(
                            "{holder} calls {op} in {rel} but is not granted {action} on {}",
                            resource.unwrap_or("anything")
                        ));
                    }
                }
            }
        }
    }
    // An asynchronous invoke's on-failure destination is sent by Lambda with the function's own
    // role ("the execution role needs permission to send to the destination", Lambda developer
    // guide, invocation-async-retain-records.html); an SSE-KMS queue also needs
    // kms:GenerateDataKey and kms:Decrypt from its producers (SQS developer guide,
    // sqs-key-management.html).
    for f in t.of_type("AWS::Serverless::Function") {
        let dest = &t.props(&f)["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        if dest.get("Type").and_then(Value::as_str) != Some("SQS") {
            continue;
        }
        let queue = getatt_parts(intrinsic(&dest["Destination"]).unwrap().1).0;
        let grants = t.grants(&f);
        let mut needs = vec![("sqs:SendMessage", t.eval(&dest["Destination"]).unwrap())];
        if let Some(key) = t.props(&queue).get("KmsMasterKeyId") {
            let (_, k) = intrinsic(key).unwrap();
            let key = format!("arn:aws:test:us-east-1:123456789012:{}/Arn", s(k));
            needs.push(("kms:GenerateDataKey", key.clone()));
            needs.push(("kms:Decrypt", key));
        }
        for (action, resource) in needs {
            checked += 1;
            if !grants.iter().any(|(a, r)| a == action && *r == resource) {
                problems.push(format!("{f}'s failure destination needs {action} on {resource}"));
            }
        }
    }
    // Calls made for the code by AWS services:
    // - ECS pulls the image with the task execution role; a KMS-encrypted repository needs
    //   kms:Decrypt on its key from that role (ECR user guide, encryption-at-rest.html);
    // - CloudWatch Logs encrypts a log group with its KMS key itself: the key policy must let the
    //   logs.<region> principal use it for this account's log groups ("the key policy must allow
    //   CloudWatch Logs", encrypt-log-data-kms.html), whichever role writes the events.
    let repo_key = t.props("Repository")["EncryptionConfiguration"]["KmsKey"].clone();
    let exec_role = getatt_parts(intrinsic(&t.props("TaskDefinition")["ExecutionRoleArn"]).unwrap().1).0;
    checked += 1;
    let key = t.eval(&repo_key).unwrap();
    if !t
        .grants(&exec_role)
        .iter()
        .any(|(a, r)| a == "kms:Decrypt" && *r == key)
    {
        problems.push(format!(
            "{exec_role} pulls from a repository encrypted with {key} without kms:Decrypt on it"
        ));
    }
    let key_policy = &t.props("AuditKey")["KeyPolicy"]["Statement"];
    let logs_may_use = key_policy.as_sequence().unwrap().iter().any(|st| {
        t.eval(&st["Principal"]["Service"]).as_deref() == Some("logs.us-east-1.amazonaws.com")
            && ["kms:Encrypt*", "kms:GenerateDataKey*", "kms:Decrypt*"]
                .iter()
                .all(|a| one_or_many(&st["Action"]).iter().any(|x| x.as_str() == Some(a)))
            && st["Condition"]["ArnLike"]
                .get("kms:EncryptionContext:aws:logs:arn")
                .is_some()
    });
    for g in t.of_type("AWS::Logs::LogGroup") {
        checked += 1;
        let Some(k) = t.props(&g).get("KmsKeyId") else { continue };
        if getatt_parts(intrinsic(k).unwrap().1).0 != "AuditKey" || !logs_may_use {
            problems.push(format!("{g}: its KMS key does not let CloudWatch Logs encrypt it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 20, "only {checked} grants checked");
}

/// `sam local invoke` runs each function with env.json (samconfig.toml's local_invoke section).
/// SAM passes a function only the variables its template `Environment` declares, overridden by
/// env.json ("override values defined in your templates", SAM developer guide,
/// serverless-sam-cli-using-invoke.html; SAM CLI `EnvironmentVariables.resolve` iterates the
/// template's variables only): a variable env.json sets that the template does not declare is
/// silently dropped, and a function env.json lacks runs against whatever the template resolves to.
#[test]
fn env_json_sets_only_declared_variables_of_every_function() {
    let t = Template::load();
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("env.json")).unwrap()).unwrap();
    let env = env.as_object().expect("env.json: one object per function logical id");
    let functions: BTreeSet<String> = t.of_type("AWS::Serverless::Function").into_iter().collect();
    let named: BTreeSet<String> = env.keys().cloned().collect();
    assert_eq!(named, functions, "env.json names exactly the template's functions");
    let mut checked = 0;
    for (f, vars) in env {
        // Declared: every key of the function's Environment.Variables, the ones only declared under
        // LocalStandIns (!If ... AWS::NoValue) included.
        let declared: BTreeSet<String> = t.props(f)["Environment"]["Variables"]
            .as_mapping()
            .map(|m| m.keys().map(|k| s(k).to_string()).collect())
            .unwrap_or_default();
        for (name, value) in vars.as_object().unwrap() {
            assert!(
                declared.contains(name),
                "env.json: {f}.{name} is not in the template's Environment: SAM would drop it"
            );
            assert!(value.is_string(), "{f}.{name}: SAM takes strings");
            checked += 1;
        }
        // What the function would otherwise try to reach on AWS: every endpoint it declares points
        // at a stand-in, and so do the resources its settings name.
        for name in declared.iter().filter(|n| n.starts_with("AWS_ENDPOINT_URL_")) {
            let url = vars[name.as_str()].as_str().unwrap_or_default();
            assert!(url.starts_with("http://host.docker.internal:"), "{f}.{name} = {url:?}");
        }
        for name in ["TOLLGATE_DB_CLUSTER_ARN", "TOLLGATE_AUDIT_BUCKET"] {
            if declared.contains(name) {
                let v = vars[name].as_str().unwrap_or_default();
                assert!(v.contains("local"), "{f}.{name} = {v:?}: a local stand-in's");
            }
        }
        // Every endpoint variable the function's SDK clients need is declared (ready for env.json).
        let uses_db = declared.contains("TOLLGATE_DB_CLUSTER_ARN");
        assert_eq!(declared.contains("AWS_ENDPOINT_URL_RDS_DATA"), uses_db, "{f}");
        // And it has events to invoke it with.
        let binary = s(&t.resource(f)["Metadata"]["BuildProperties"]["Binary"]).to_string();
        let events = tollgate_core::http_fn::event_files(&root().join("events"), &format!("{binary}-"));
        assert!(
            !events.is_empty(),
            "{f}: no events/{binary}-*.json for sam local invoke -e"
        );
    }
    assert!(checked >= 20, "only {checked} variables in env.json");
    // The endpoint variables exist only under sam local invoke: LocalStandIns, false by default
    // and true only in the local_invoke section, whose overrides are otherwise the global ones.
    assert_eq!(t.parameter_default("LocalStandIns"), "false");
    for f in &functions {
        for (name, v) in t.props(f)["Environment"]["Variables"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            if s(name).starts_with("AWS_ENDPOINT_URL_") {
                let (func, arg) = intrinsic(v).unwrap_or_else(|| panic!("{f}.{}: not conditional", s(name)));
                assert_eq!((func.as_str(), s(&arg[0])), ("If", "UseLocalStandIns"), "{f}");
                assert_eq!(
                    intrinsic(&arg[2]).map(|(_, a)| s(a).to_string()).as_deref(),
                    Some("AWS::NoValue")
                );
            }
        }
    }
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("samconfig.toml")).unwrap()).unwrap();
    let local = &config["default"]["local_invoke"]["parameters"];
    assert_eq!(local["env_vars"].as_str(), Some("env.json"));
    let global = config["default"]["global"]["parameters"]["parameter_overrides"]
        .as_str()
        .unwrap();
    assert_eq!(
        local["parameter_overrides"].as_str(),
        Some(format!("{global} LocalStandIns=true").as_str())
    );
    for env in ["default", "prod"] {
        let o = config[env]["global"]["parameters"]["parameter_overrides"]
            .as_str()
            .unwrap();
        assert!(
            !o.contains("LocalStandIns=true"),
            "{env}: a deployed stack with local endpoints"
        );
    }
}

/// Issue 14: no route reaches requests-api without authentication. The ALB forwards only to the
/// ingress's target group (the ECS service's containers), in front of which an optional
/// `authenticate-oidc` action may stand; the ingress enforces each route's `auth` and `scopes`,
/// and routes.toml gives every requests-api route a credential and a scope. Nothing else can
/// invoke requests-api: no Lambda target group, function URL, API Gateway API, event source or
/// resource policy, and only the task role may invoke its alias.
#[test]
fn no_route_reaches_requests_api_without_auth() {
    let t = Template::load();
    // routes.toml: every requests-api route needs a credential and a scope.
    let routes: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("routes.toml")).unwrap()).unwrap();
    let mut requests_routes = 0;
    for r in routes["routes"].as_array().unwrap() {
        if r["function"].as_str() != Some("requests-api") {
            continue;
        }
        requests_routes += 1;
        let path = r["path"].as_str().unwrap();
        let auth = r.get("auth").and_then(|a| a.as_str()).unwrap_or("none");
        assert!(
            ["api_key", "jwt", "any"].contains(&auth),
            "routes.toml: {path} reaches requests-api with auth {auth:?}"
        );
        let scopes = r.get("scopes").and_then(|s| s.as_array()).map(Vec::len).unwrap_or(0);
        assert!(scopes > 0, "routes.toml: {path} reaches requests-api without a scope");
    }
    assert!(requests_routes >= 2, "routes.toml has no requests-api routes");
    // The ingress's own reading of the table agrees (the shipped table loads, and its
    // requests-api routes are not anonymous).
    RouteTable::load(&root().join("routes.toml")).expect("routes.toml loads");

    // The only target group is the ingress's: an ip target group the ECS service registers its
    // `ingress` containers in.
    let groups = t.of_type("AWS::ElasticLoadBalancingV2::TargetGroup");
    assert_eq!(groups, vec!["TargetGroup".to_string()], "target groups: {groups:?}");
    assert_eq!(s(&t.props("TargetGroup")["TargetType"]), "ip", "no Lambda target group");
    let lbs = t.props("Service")["LoadBalancers"].as_sequence().unwrap();
    assert!(lbs.iter().all(|lb| s(&lb["ContainerName"]) == "ingress"
        && intrinsic(&lb["TargetGroupArn"]).map(|(_, a)| s(a) == "TargetGroup") == Some(true)));

    // Every listener's and rule's actions: forward to the ingress, redirect, fixed answers, or
    // authenticate-oidc followed by a forward to the ingress.
    let check_actions = |holder: &str, actions: &Value| {
        let list: Vec<&Value> = match intrinsic(actions) {
            // !If [cond, a, b]: both branches.
            Some((f, arg)) if f == "If" => [&arg[1], &arg[2]]
                .into_iter()
                .flat_map(|b| b.as_sequence().unwrap().iter())
                .collect(),
            _ => actions.as_sequence().unwrap().iter().collect(),
        };
        assert!(!list.is_empty(), "{holder}: no actions");
        for a in list {
            match s(&a["Type"]) {
                "forward" => {
                    let target = intrinsic(&a["TargetGroupArn"]).map(|(_, x)| s(x).to_string());
                    assert_eq!(
                        target.as_deref(),
                        Some("TargetGroup"),
                        "{holder} forwards elsewhere than the ingress"
                    );
                    assert!(
                        a.get("ForwardConfig").is_none(),
                        "{holder}: weighted forwards are not checked"
                    );
                }
                "redirect" | "fixed-response" | "authenticate-oidc" => {}
                other => panic!("{holder}: action {other} is not checked by this test"),
            }
        }
    };
    for l in t.of_type("AWS::ElasticLoadBalancingV2::Listener") {
        check_actions(&l, &t.props(&l)["DefaultActions"]);
    }
    let rules = t.of_type("AWS::ElasticLoadBalancingV2::ListenerRule");
    for r in &rules {
        let actions = &t.props(r)["Actions"];
        check_actions(r, actions);
        // An authenticate action comes first, and the forward after it.
        let list = actions.as_sequence().unwrap();
        if list.iter().any(|a| s(&a["Type"]) == "authenticate-oidc") {
            let order = |ty: &str| list.iter().find(|a| s(&a["Type"]) == ty).map(|a| number(&a["Order"]));
            assert!(
                order("authenticate-oidc") < order("forward"),
                "{r}: authenticate after forward"
            );
            let cfg = &list.iter().find(|a| s(&a["Type"]) == "authenticate-oidc").unwrap()["AuthenticateOidcConfig"];
            assert_eq!(
                s(&cfg["OnUnauthenticatedRequest"]),
                "authenticate",
                "{r} lets unauthenticated callers through"
            );
            // The client secret is a dynamic reference, never a parameter's plain value.
            let secret = t.eval(&cfg["ClientSecret"]).unwrap();
            assert!(
                secret.starts_with("{{resolve:secretsmanager:"),
                "{r}: client secret {secret}"
            );
        }
    }
    // The ALB OIDC rule covers exactly the requests-api paths, on the HTTPS listener.
    let oidc = t.props("RequestsOidcRule");
    assert_eq!(
        intrinsic(&oidc["ListenerArn"])
            .map(|(_, a)| s(a).to_string())
            .as_deref(),
        Some("HttpsListener")
    );
    let patterns: Vec<&str> = oidc["Conditions"][0]["PathPatternConfig"]["Values"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(patterns, ["/v1/requests", "/v1/requests/*"]);
    for r in routes["routes"].as_array().unwrap() {
        if r["function"].as_str() == Some("requests-api") {
            let path = r["path"].as_str().unwrap();
            let literal = path.split("/{").next().unwrap();
            assert!(
                patterns
                    .iter()
                    .any(|p| p.trim_end_matches('*') == literal || p.trim_end_matches("/*") == literal),
                "{path} is not covered by the ALB OIDC rule"
            );
        }
    }
    // In ALB OIDC mode the ingress verifies the ALB's signature: its signer is this load balancer.
    let env = t.container()["Environment"].as_sequence().unwrap();
    let signer = env
        .iter()
        .find(|e| s(&e["Name"]) == "TOLLGATE_ALB_OIDC_SIGNER_ARN")
        .expect("TOLLGATE_ALB_OIDC_SIGNER_ARN");
    let (f, arg) = intrinsic(&signer["Value"]).unwrap();
    assert_eq!((f.as_str(), s(&arg[0])), ("If", "UseAlbOidc"));
    assert_eq!(
        intrinsic(&arg[1]).map(|(f, a)| (f, s(a).to_string())),
        Some(("Ref".into(), "LoadBalancer".into()))
    );
    assert_eq!(t.resource("RequestsOidcRule")["Condition"], "UseAlbOidc");

    // No other way in: no function URL, API Gateway API, Lambda target, event source or
    // resource policy that reaches a function from outside the ingress.
    for (name, r) in t.section("Resources") {
        let ty = s(&r["Type"]);
        assert!(
            !(ty == "AWS::Lambda::Url"
                || ty == "AWS::Lambda::Permission"
                || ty.starts_with("AWS::ApiGateway")
                || ty == "AWS::Serverless::Api"
                || ty == "AWS::Serverless::HttpApi"),
            "{name}: {ty} opens a way to a function past the ingress"
        );
        if ty == "AWS::Serverless::Function" {
            assert!(
                r["Properties"].get("FunctionUrlConfig").is_none(),
                "{name} has a function URL"
            );
            for (_, e) in r["Properties"]["Events"].as_mapping().into_iter().flatten() {
                let kind = s(&e["Type"]);
                assert!(
                    !["Api", "HttpApi"].contains(&kind) || name != "RequestsApiFunction",
                    "{name}: {kind} event"
                );
                assert!(
                    name != "RequestsApiFunction",
                    "requests-api has an event source ({kind})"
                );
            }
        }
    }
    // Only the task role may invoke requests-api.
    let holders: Vec<String> = t
        .of_type("AWS::IAM::Role")
        .into_iter()
        .chain(t.of_type("AWS::Serverless::Function"))
        .filter(|h| {
            t.statements(h).iter().any(|st| {
                one_or_many(&st["Action"]).iter().any(|a| s(a) == "lambda:InvokeFunction")
                    && one_or_many(&st["Resource"]).iter().any(|r| {
                        t.eval(r).is_some_and(|x| x.contains("RequestsApiFunction")) || matches!(intrinsic(r), Some((_, a)) if a.as_str().is_some_and(|a| a.starts_with("RequestsApiFunction")))
                    })
            })
        })
        .collect();
    assert_eq!(holders, vec!["TaskRole".to_string()]);
}

/// Issue 14: no function or task but db-migrate uses the master secret, in its environment or
/// its IAM grants; each component reads exactly its own role's secret, the one its
/// TOLLGATE_DB_SECRET_ARN names; the roles' secrets hold a `username` (the Data API's secret
/// JSON has `username` and `password`) and reach db-migrate as dynamic references.
#[test]
fn no_function_or_task_but_db_migrate_uses_the_master_secret() {
    let t = Template::load();
    let uses_master = |v: &Value| {
        let mut found = false;
        walk(v, &mut |x| {
            if let Some((f, arg)) = intrinsic(x) {
                let text = match f.as_str() {
                    "GetAtt" => {
                        let (r, a) = getatt_parts(arg);
                        format!("{r}.{a}")
                    }
                    "Sub" => match arg {
                        Value::Sequence(seq) => seq[0].as_str().unwrap_or_default().to_string(),
                        other => other.as_str().unwrap_or_default().to_string(),
                    },
                    _ => String::new(),
                };
                found |= text.contains("MasterUserSecret");
            }
        });
        found
    };
    let mut users = BTreeSet::new();
    for (name, r) in t.section("Resources") {
        if uses_master(r) {
            users.insert(name);
        }
    }
    // db-migrate (its environment and grant) and the cluster that owns the secret; the
    // operator's output names it too.
    assert_eq!(
        users,
        BTreeSet::from(["DbMigrateFunction".to_string()]),
        "the master secret is used by {users:?}"
    );
    assert!(uses_master(&t.doc["Outputs"]["DatabaseSecretArn"]));

    // Every component that reaches the database reads its own secret, and only that one.
    let mut components: Vec<(String, String)> = Vec::new();
    for f in t.of_type("AWS::Serverless::Function") {
        if let Some((_, v)) = t
            .function_env(&f)
            .into_iter()
            .find(|(n, _)| n == "TOLLGATE_DB_SECRET_ARN")
        {
            components.push((f, v));
        }
    }
    let task_env = t.container()["Environment"].as_sequence().unwrap();
    let task_secret = task_env
        .iter()
        .find(|e| s(&e["Name"]) == "TOLLGATE_DB_SECRET_ARN")
        .unwrap();
    components.push(("TaskRole".into(), t.eval(&task_secret["Value"]).unwrap()));
    assert_eq!(components.len(), 6, "{components:?}");
    for (holder, secret) in &components {
        assert_eq!(secret, database_secret(holder), "{holder}'s TOLLGATE_DB_SECRET_ARN");
        let read: Vec<String> = t
            .grants(holder)
            .into_iter()
            .filter(|(a, _)| a.starts_with("secretsmanager:"))
            .map(|(a, r)| format!("{a} {r}"))
            .collect();
        assert_eq!(
            read,
            vec![format!("secretsmanager:GetSecretValue {secret}")],
            "{holder}"
        );
    }
    for (secret, user) in [
        ("ReaderDbSecret", "tollgate_reader"),
        ("WriterDbSecret", "tollgate_writer"),
    ] {
        let gen = &t.props(secret)["GenerateSecretString"];
        let template: serde_json::Value = serde_json::from_str(s(&gen["SecretStringTemplate"])).unwrap();
        assert_eq!(template["username"], user);
        assert_eq!(s(&gen["GenerateStringKey"]), "password");
    }
    let schema = t.props("DatabaseSchema");
    for (prop, secret, key) in [
        ("ReaderUsername", "ReaderDbSecret", "username"),
        ("ReaderPassword", "ReaderDbSecret", "password"),
        ("WriterUsername", "WriterDbSecret", "username"),
        ("WriterPassword", "WriterDbSecret", "password"),
    ] {
        let (f, arg) = intrinsic(&schema[prop]).unwrap();
        assert_eq!(f, "Sub");
        assert_eq!(
            s(arg),
            format!("{{{{resolve:secretsmanager:${{{secret}}}:SecretString:{key}}}}}"),
            "{prop}"
        );
    }
}

// ---- the verifiable audit trail (issue 15) ----------------------------------------------------

/// The holders of a role (SAM functions, IAM roles) and the role ARN pattern each is signed in
/// as: `arn:aws:iam::<account>:role<path>*`, from the role's `Path` or the function's `RolePath`.
fn role_pattern(t: &Template, holder: &str) -> Option<String> {
    let props = t.props(holder);
    let path = props.get("RolePath").or_else(|| props.get("Path"))?;
    Some(format!("arn:aws:iam::123456789012:role{}*", t.eval(path).unwrap()))
}

/// Every holder of IAM grants: the SAM functions (their generated roles) and the IAM roles.
fn holders(t: &Template) -> Vec<String> {
    let mut out = t.of_type("AWS::Serverless::Function");
    out.extend(t.of_type("AWS::IAM::Role"));
    out
}

/// The roles that sign with the log key (issue 15): the audit writer and the digest function
/// (checkpoints, digests) and the ingress task (its receipt keys' certificates).
const LOG_SIGNERS: [&str; 3] = ["AuditWriterFunction", "AuditDigestFunction", "TaskRole"];

/// The log key is an Ed25519 signing key that exactly the three log signers may sign with: the
/// key policy allows kms:Sign only to their role paths (pure Ed25519 over the raw message),
/// denies it to every other principal, and lets the account administer the key without signing
/// or granting; their IAM policies grant Sign on it, and no other role's does.
#[test]
fn the_log_key_is_sign_only_for_exactly_the_log_signers() {
    let t = Template::load();
    let key = t.resource("LogKey");
    let props = &key["Properties"];
    assert_eq!(s(&props["KeySpec"]), "ECC_NIST_EDWARDS25519");
    assert_eq!(s(&props["KeyUsage"]), "SIGN_VERIFY");
    assert_eq!(props["EnableKeyRotation"], Value::Bool(false));
    assert_eq!(s(&key["DeletionPolicy"]), "Retain", "checkpoints stay verifiable");
    let signers: BTreeSet<String> = LOG_SIGNERS
        .iter()
        .map(|h| role_pattern(&t, h).unwrap_or_else(|| panic!("{h} has no role path")))
        .collect();
    assert_eq!(signers.len(), 3, "each signer has a path of its own: {signers:?}");
    let account = "arn:aws:iam::123456789012:root";
    let statements = props["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let principal_arns = |st: &Value| -> BTreeSet<String> {
        one_or_many(
            &st["Condition"][if st["Effect"] == "Deny" {
                "ArnNotLike"
            } else {
                "ArnLike"
            }]["aws:PrincipalArn"],
        )
        .into_iter()
        .map(|v| t.eval(v).unwrap())
        .collect()
    };
    // An action pattern (kms:*, kms:S*, kms:Sign) that covers `action`.
    let covers = |pattern: &str, action: &str| match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    };
    let (mut sign_allowed, mut sign_denied) = (false, false);
    for st in statements {
        let sid = s(&st["Sid"]);
        let acts: Vec<&str> = one_or_many(&st["Action"]).into_iter().map(s).collect();
        let grants_sign = acts.iter().any(|a| covers(a, "kms:Sign"));
        match s(&st["Effect"]) {
            "Allow" => {
                assert_eq!(
                    t.eval(&st["Principal"]["AWS"]).as_deref(),
                    Some(account),
                    "{sid}: only the account is a principal (roles are matched by condition)"
                );
                for a in &acts {
                    assert!(!covers(a, "kms:CreateGrant"), "{sid}: {a} could grant Sign to anyone");
                }
                if grants_sign {
                    assert_eq!(acts, ["kms:Sign"], "{sid}");
                    assert_eq!(principal_arns(st), signers, "{sid}: who may sign");
                    let alg = &st["Condition"]["StringEquals"];
                    assert_eq!(s(&alg["kms:SigningAlgorithm"]), "ED25519_SHA_512", "{sid}");
                    assert_eq!(s(&alg["kms:MessageType"]), "RAW", "{sid}");
                    sign_allowed = true;
                } else if st.get("Condition").is_some() {
                    assert_eq!(principal_arns(st), signers, "{sid}: who may read the public key");
                } else {
                    // The administrators' statement: it keeps kms:PutKeyPolicy (the lockout
                    // safety check; the rehearsal checks it too) and nothing that signs.
                    assert!(acts.iter().any(|a| covers(a, "kms:PutKeyPolicy")), "{sid}");
                }
            }
            "Deny" => {
                assert_eq!(st["Principal"], "*", "{sid}");
                assert!(grants_sign, "{sid}");
                assert_eq!(principal_arns(st), signers, "{sid}: everyone but the signers");
                sign_denied = true;
            }
            other => panic!("{sid}: Effect {other}"),
        }
    }
    assert!(
        sign_allowed && sign_denied,
        "the signers may sign and everyone else is denied"
    );

    // IAM: exactly the signers are granted kms:Sign on the key, and no one on every key.
    let key_arn = t.eval(&serde_yaml::from_str("!GetAtt LogKey.Arn").unwrap()).unwrap();
    let mut granted = BTreeSet::new();
    for holder in holders(&t) {
        for (action, resource) in t.grants(&holder) {
            if covers(&action, "kms:Sign") {
                assert_eq!(resource, key_arn, "{holder} may {action} on {resource}");
                granted.insert(holder.clone());
            }
        }
    }
    assert_eq!(
        granted,
        LOG_SIGNERS.iter().map(|h| h.to_string()).collect::<BTreeSet<_>>(),
        "the roles granted kms:Sign on the log key"
    );
    // No other role shares a signer's path (the key policy matches roles by path).
    for holder in holders(&t) {
        if !LOG_SIGNERS.contains(&holder.as_str()) {
            if let Some(p) = role_pattern(&t, &holder) {
                assert!(!signers.contains(&p), "{holder} has a signer's role path {p}");
            }
        }
    }
    assert!(t.of_type("AWS::IAM::Policy").is_empty() && t.of_type("AWS::IAM::ManagedPolicy").is_empty());
}

/// The trail bucket: Object Lock always on with the mode and days of its parameters (COMPLIANCE
/// in prod), versioned, SSE-KMS, private, TLS-only, create-only, retained with the stack, and
/// nothing in it ever expires (the log is append-only: every tile is needed for proofs).
#[test]
fn the_trail_bucket_is_locked_and_never_expires() {
    let t = Template::load();
    let bucket = t.resource("TrailBucket");
    assert_eq!(s(&bucket["DeletionPolicy"]), "Retain");
    let b = &bucket["Properties"];
    assert_eq!(
        b["ObjectLockEnabled"],
        Value::Bool(true),
        "not conditional: always locked"
    );
    let lock = &b["ObjectLockConfiguration"];
    assert_eq!(s(&lock["ObjectLockEnabled"]), "Enabled");
    let retention = &lock["Rule"]["DefaultRetention"];
    assert_eq!(intrinsic(&retention["Mode"]).unwrap().1, "TrailObjectLockMode");
    assert_eq!(intrinsic(&retention["Days"]).unwrap().1, "TrailRetentionDays");
    assert_eq!(t.parameter_default("TrailObjectLockMode"), "GOVERNANCE");
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("samconfig.toml")).unwrap()).unwrap();
    let prod = config["prod"]["global"]["parameters"]["parameter_overrides"]
        .as_str()
        .unwrap();
    assert!(
        prod.split_whitespace().any(|p| p == "TrailObjectLockMode=COMPLIANCE"),
        "prod locks the trail in COMPLIANCE mode: {prod}"
    );
    assert_eq!(s(&b["VersioningConfiguration"]["Status"]), "Enabled");
    let sse = &b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"];
    assert_eq!(s(&sse["SSEAlgorithm"]), "aws:kms");
    assert!(b["PublicAccessBlockConfiguration"]
        .as_mapping()
        .unwrap()
        .values()
        .all(|v| *v == Value::Bool(true)));
    for rule in b["LifecycleConfiguration"]["Rules"].as_sequence().into_iter().flatten() {
        for expiry in [
            "ExpirationInDays",
            "ExpirationDate",
            "NoncurrentVersionExpiration",
            "NoncurrentVersionExpirationInDays",
            "Transitions",
            "NoncurrentVersionTransitions",
        ] {
            assert!(
                rule.get(expiry).is_none(),
                "the trail never expires: {expiry} in {rule:?}"
            );
        }
    }
    let policy = serde_json::to_string(&t.props("TrailBucketPolicy")["PolicyDocument"]).unwrap();
    for needle in [
        "aws:SecureTransport",
        "s3:if-none-match",
        "s3:x-amz-server-side-encryption",
    ] {
        assert!(policy.contains(needle), "{needle}: {policy}");
    }
    assert_eq!(
        intrinsic(&t.props("TrailBucketPolicy")["Bucket"]).unwrap().1,
        "TrailBucket"
    );
}

/// Who reaches the trail bucket, and how: the writer and the digest function integrate the log
/// (read and write `log/`), the digest function also writes `digest/` and lists the audit
/// objects, requests-api reads `log/` for proofs. Each may also list the bucket, so that a tile not
/// written yet reads as missing ("If you don't have the s3:ListBucket permission, Amazon S3
/// returns an HTTP status code 403 Access Denied error", S3 API reference, GetObject), and use
/// the audit key the bucket encrypts with (S3 user guide, UsingKMSEncryption.html). Nothing else
/// reaches the trail. The table is tied to the code: the writer integrates (`integrate`) and
/// requests-api reads the trail for proofs (`with_tlog`).
#[test]
fn the_trail_is_reached_by_exactly_those_that_use_it() {
    let t = Template::load();
    let trail = "arn:aws:test:us-east-1:123456789012:TrailBucket/Arn";
    let audit = "arn:aws:test:us-east-1:123456789012:AuditBucket/Arn";
    let key = "arn:aws:test:us-east-1:123456789012:AuditKey/Arn";
    let g = |a: &str, r: String| (a.to_string(), r);
    let users: [(&str, Vec<(String, String)>); 3] = [
        (
            "AuditWriterFunction",
            vec![
                g("s3:GetObject", format!("{trail}/log/*")),
                g("s3:PutObject", format!("{trail}/log/*")),
                g("s3:ListBucket", trail.into()),
                g("kms:GenerateDataKey", key.into()),
                g("kms:Decrypt", key.into()),
            ],
        ),
        (
            "AuditDigestFunction",
            vec![
                g("s3:GetObject", format!("{trail}/log/*")),
                g("s3:PutObject", format!("{trail}/log/*")),
                g("s3:GetObject", format!("{trail}/digest/*")),
                g("s3:PutObject", format!("{trail}/digest/*")),
                g("s3:ListBucket", trail.into()),
                g("s3:ListBucket", audit.into()),
                g("s3:GetObject", format!("{audit}/audit/*")),
                g("kms:GenerateDataKey", key.into()),
                g("kms:Decrypt", key.into()),
            ],
        ),
        (
            "RequestsApiFunction",
            vec![
                g("s3:GetObject", format!("{trail}/log/*")),
                g("s3:ListBucket", trail.into()),
                g("kms:Decrypt", key.into()),
            ],
        ),
    ];
    for (holder, needs) in &users {
        let grants = t.grants(holder);
        for need in needs {
            assert!(grants.contains(need), "{holder} needs {} on {}", need.0, need.1);
        }
        let env: BTreeMap<String, String> = t.function_env(holder).into_iter().collect();
        assert_eq!(env["TOLLGATE_TRAIL_BUCKET"], "ref-TrailBucket", "{holder}");
    }
    for holder in holders(&t) {
        if users.iter().any(|(u, _)| *u == holder) {
            continue;
        }
        for (action, resource) in t.grants(&holder) {
            assert!(!resource.starts_with(trail), "{holder} may {action} on {resource}");
        }
    }
    // Tied to the code: who integrates and who reads proofs.
    let code = |dir: &str| -> String {
        rust_files(&root().join(dir))
            .iter()
            .map(|f| source_without_tests(f))
            .collect()
    };
    assert!(
        code("functions/audit-writer/src").contains("integrate"),
        "the writer integrates"
    );
    assert!(
        code("functions/requests-api/src").contains("with_tlog("),
        "requests-api reads the trail"
    );
}

/// The audit-digest function: on its schedule, with the settings of issue 15, the writer's
/// database role, the trail, the log key and the one origin the whole stack uses; its log group
/// archived and its errors alarmed. Writer and task get the log key and origin too, and the
/// verifier key is a stack output (a custom resource the function answers).
#[test]
fn the_digest_function_signs_on_its_schedule_and_the_stack_publishes_the_key() {
    let t = Template::load();
    let f = t.props("AuditDigestFunction");
    assert_eq!(
        s(&t.resource("AuditDigestFunction")["Metadata"]["BuildProperties"]["Binary"]),
        "audit-digest"
    );
    assert_eq!(s(&f["CodeUri"]), "functions/audit-digest");
    let schedule = &f["Events"]["Schedule"];
    assert_eq!(s(&schedule["Type"]), "Schedule");
    assert_eq!(
        t.eval(&schedule["Properties"]["Schedule"]).as_deref(),
        Some("rate(15 minutes)"),
        "every 15 minutes by default"
    );
    // `tollgate verify` in aws mode waits two of the schedule's runs before it calls a period's
    // digest missing: its default is the schedule's.
    assert_eq!(
        number(&t.doc["Parameters"]["DigestIntervalMinutes"]["Default"]) * 60_000,
        tollgate_ingress::cli::DEFAULT_DIGEST_SCHEDULE_MS,
        "tollgate verify --digest-schedule-ms default vs DigestIntervalMinutes"
    );
    assert_eq!(t.parameter_default("DigestPeriodMinutes"), "60");
    let env: BTreeMap<String, String> = t.function_env("AuditDigestFunction").into_iter().collect();
    let origin = t.eval(&t.props("LogVerifierKey")["Origin"]).unwrap();
    for (name, want) in [
        ("TOLLGATE_MODE", "aws"),
        ("TOLLGATE_DB_SECRET_ARN", "ref-WriterDbSecret"),
        ("TOLLGATE_AUDIT_BUCKET", "ref-AuditBucket"),
        ("TOLLGATE_TRAIL_BUCKET", "ref-TrailBucket"),
        (
            "TOLLGATE_LOG_KMS_KEY_ID",
            "arn:aws:test:us-east-1:123456789012:LogKey/Arn",
        ),
        ("TOLLGATE_LOG_ORIGIN", origin.as_str()),
        ("TOLLGATE_DIGEST_PERIOD_MS", "3600000"),
    ] {
        assert_eq!(
            env.get(name).map(String::as_str),
            Some(want),
            "AuditDigestFunction {name}"
        );
    }
    assert!(env.contains_key("TOLLGATE_DB_CLUSTER_ARN"));
    // Every period offered maps to its milliseconds, and divides a day (periods align with hours
    // and days).
    for minutes in t.doc["Parameters"]["DigestPeriodMinutes"]["AllowedValues"]
        .as_sequence()
        .unwrap()
    {
        let m = number(minutes);
        assert_eq!(1440 % m, 0, "{m} minutes do not divide a day");
        assert_eq!(
            t.eval(&t.doc["Mappings"]["DigestPeriods"][m.to_string().as_str()]["Ms"]),
            Some((m * 60_000).to_string()),
            "DigestPeriods {m}"
        );
    }
    // One origin everywhere: writer, digest, task, custom resource, output. By default it is the
    // stack's own (C2SP tlog-checkpoint: non-empty, no spaces, no "+"; unique per log).
    let writer: BTreeMap<String, String> = t.function_env("AuditWriterFunction").into_iter().collect();
    let task: BTreeMap<String, String> = t.container()["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (s(&e["Name"]).to_string(), t.eval(&e["Value"]).unwrap()))
        .collect();
    for (who, vars) in [("AuditWriterFunction", &writer), ("TaskRole", &task)] {
        assert_eq!(vars["TOLLGATE_LOG_ORIGIN"], origin, "{who}");
        assert_eq!(
            vars["TOLLGATE_LOG_KMS_KEY_ID"], "arn:aws:test:us-east-1:123456789012:LogKey/Arn",
            "{who}"
        );
    }
    assert_eq!(t.eval(&t.doc["Outputs"]["LogOrigin"]["Value"]).unwrap(), origin);
    let (f_if, arg) = intrinsic(&t.props("LogVerifierKey")["Origin"]).unwrap();
    assert_eq!((f_if.as_str(), s(&arg[0])), ("If", "HasLogOrigin"));
    assert_eq!(intrinsic(&arg[1]).unwrap().1, "LogOrigin");
    let stack_origin = t.eval(&arg[2]).unwrap();
    assert_eq!(stack_origin, "tollgate.us-east-1.123456789012/tollgate-dev");
    assert!(!stack_origin.chars().any(|c| c.is_whitespace() || c == '+'));
    assert_eq!(t.parameter_default("LogOrigin"), "");
    assert_eq!(s(&t.doc["Parameters"]["LogOrigin"]["AllowedPattern"]), "^$|^[!-*,-~]+$");
    // The verifier key: a custom resource answered by the digest function, and an output.
    let cr = t.props("LogVerifierKey");
    assert_eq!(s(&t.resource("LogVerifierKey")["Type"]), "Custom::LogVerifierKey");
    assert_eq!(
        getatt_parts(intrinsic(&cr["ServiceToken"]).unwrap().1).0,
        "AuditDigestFunction"
    );
    assert_eq!(
        getatt_parts(intrinsic(&cr["KeyId"]).unwrap().1),
        ("LogKey".to_string(), "Arn".to_string())
    );
    let outputs = t.section("Outputs");
    assert_eq!(
        getatt_parts(intrinsic(&outputs["LogVerifierKey"]["Value"]).unwrap().1),
        ("LogVerifierKey".to_string(), "VerifierKey".to_string())
    );
    assert_eq!(
        intrinsic(&outputs["TrailBucketName"]["Value"]).unwrap().1,
        "TrailBucket"
    );
    assert_eq!(
        getatt_parts(intrinsic(&outputs["LogKeyArn"]["Value"]).unwrap().1),
        ("LogKey".to_string(), "Arn".to_string())
    );
    // Operated like the other scheduled function: its own log group, archived, errors alarmed.
    assert_eq!(
        intrinsic(&f["LoggingConfig"]["LogGroup"]).unwrap().1,
        "AuditDigestLogGroup"
    );
    assert!(t.of_type("AWS::Logs::SubscriptionFilter").iter().any(|sf| {
        intrinsic(&t.props(sf)["LogGroupName"]).map(|(_, g)| s(g).to_string()) == Some("AuditDigestLogGroup".into())
    }));
    assert!(t.of_type("AWS::CloudWatch::Alarm").iter().any(|a| {
        let p = t.props(a);
        s(&p["MetricName"]) == "Errors"
            && intrinsic(&p["Dimensions"][0]["Value"]).map(|(_, v)| s(v).to_string())
                == Some("AuditDigestFunction".into())
    }));
}

/// Issue 14: the optional WAF is the fleet-wide rate limit: a REGIONAL web ACL on this ALB whose
/// rate-based rule counts per client IP over a window WAF accepts (60, 120, 300 or 600 s; a limit
/// of at least 10: WAF developer guide, waf-rule-statement-type-rate-based-high-level-settings);
/// off in dev, on in prod; the operations doc says it is fleet-wide while routes.toml's `rate` is
/// per task.
#[test]
fn the_waf_rate_limit_is_per_client_ip_on_the_alb() {
    let t = Template::load();
    let acl = t.props("WebAcl");
    assert_eq!(s(&acl["Scope"]), "REGIONAL");
    let rules = acl["Rules"].as_sequence().unwrap();
    let rate = rules
        .iter()
        .find(|r| r["Statement"].get("RateBasedStatement").is_some())
        .expect("a rate-based rule");
    let stmt = &rate["Statement"]["RateBasedStatement"];
    assert_eq!(s(&stmt["AggregateKeyType"]), "IP");
    assert!(rate["Action"].get("Block").is_some(), "the rate rule blocks");
    let refs = |v: &Value| intrinsic(v).map(|(f, a)| (f, s(a).to_string()));
    assert_eq!(refs(&stmt["Limit"]), Some(("Ref".into(), "WafRateLimit".into())));
    assert_eq!(
        refs(&stmt["EvaluationWindowSec"]),
        Some(("Ref".into(), "WafRateWindowSeconds".into()))
    );
    let params = &t.doc["Parameters"];
    assert_eq!(number(&params["WafRateLimit"]["MinValue"]), 10);
    let windows: Vec<u64> = params["WafRateWindowSeconds"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(number)
        .collect();
    assert_eq!(windows, [60, 120, 300, 600]);
    let assoc = t.props("WebAclAssociation");
    assert_eq!(refs(&assoc["ResourceArn"]), Some(("Ref".into(), "LoadBalancer".into())));
    assert_eq!(
        getatt_parts(intrinsic(&assoc["WebACLArn"]).unwrap().1),
        ("WebAcl".into(), "Arn".into())
    );
    for r in ["WebAcl", "WebAclAssociation"] {
        assert_eq!(t.resource(r)["Condition"], "UseWebAcl");
    }
    let samconfig: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("samconfig.toml")).unwrap()).unwrap();
    let overrides = |env: &str| {
        samconfig[env]["global"]["parameters"]["parameter_overrides"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(overrides("prod").contains("UseWaf=true"));
    assert!(!overrides("default").contains("UseWaf=true"));
    assert_eq!(t.parameter_default("UseWaf"), "false");
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    assert!(ops.contains("fleet-wide") && ops.contains("per ingress task"));
}

/// Issue 14: the deploy workflow runs only for pushes to this repository's main (a CI run of a
/// pull request, a fork's included, is a `workflow_run` too), and every action it uses is pinned
/// by a full commit SHA with its version in a comment.
#[test]
fn deploy_runs_only_for_pushes_to_main_with_pinned_actions() {
    let text = std::fs::read_to_string(root().join(".github/workflows/deploy.yml")).unwrap();
    let wf: Value = serde_yaml::from_str(&text).unwrap();
    let job_if = s(&wf["jobs"]["deploy"]["if"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needed in [
        "github.event.workflow_run.conclusion == 'success'",
        "github.event.workflow_run.event == 'push'",
        "github.event.workflow_run.head_branch == 'main'",
        "github.event.workflow_run.head_repository.full_name == github.repository",
        "github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main'",
    ] {
        assert!(job_if.contains(needed), "deploy's if lacks {needed}: {job_if}");
    }
    let mut pinned = 0;
    for line in text.lines() {
        let Some(uses) = line.trim().trim_start_matches("- ").strip_prefix("uses: ") else {
            continue;
        };
        let (action, rest) = uses.split_once('@').unwrap_or_else(|| panic!("{uses}: no @"));
        let (sha, comment) = rest
            .split_once(" # ")
            .unwrap_or_else(|| panic!("{action}: no version comment"));
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{action} is not pinned by a commit SHA: {sha}"
        );
        assert!(comment.trim_start().starts_with('v'), "{action}: {comment}");
        pinned += 1;
    }
    assert!(pinned >= 5, "only {pinned} actions found");
}
