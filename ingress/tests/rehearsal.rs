//! An offline deploy rehearsal: for every environment in `samconfig.toml`, and for each of them
//! with the parameters at their extremes, the template is resolved as CloudFormation would
//! (parameters, pseudo parameters, conditions, `!If`, `!Sub`, `!FindInMap`, `AWS::NoValue`, the
//! `Rules` section) and checked against the constraints AWS enforces when it creates the
//! resources, which cfn-lint and checkov do not know: property combinations, versions that can
//! still be created, Fargate sizes, name lengths, the ordering some resources need. Each
//! constraint is one check with its documentation source, and one test.
//!
//! The rehearsal must catch what would have failed the first deploy: `the_rehearsal_fails_on_
//! the_template_of_d5f4915` runs it on the template and samconfig of that commit (before the
//! fixes of issue 13) and expects each finding to be reported.

use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An intrinsic function call: (`Ref` | `GetAtt` | `Sub` | ..., argument).
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_string(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k == "Condition" {
                Some((k.into(), arg))
            } else {
                k.strip_prefix("Fn::").map(|f| (f.to_string(), arg))
            }
        }
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A resolved value that CloudFormation would leave out (`!Ref AWS::NoValue`).
const NO_VALUE: &str = "\u{0}no-value";

/// One stack as CloudFormation would create it.
struct Stack<'a> {
    name: String,
    template: &'a Value,
    params: BTreeMap<String, String>,
    conditions: BTreeMap<String, bool>,
}

impl<'a> Stack<'a> {
    fn new(template: &'a Value, label: String, name: String, overrides: &BTreeMap<String, String>) -> Self {
        let mut params = BTreeMap::new();
        for (k, p) in template["Parameters"].as_mapping().unwrap() {
            let k = text(k);
            let value = overrides
                .get(&k)
                .cloned()
                .or_else(|| p.get("Default").map(text))
                .unwrap_or_else(|| panic!("{label}: parameter {k} has no value"));
            params.insert(k, value);
        }
        for k in overrides.keys() {
            assert!(
                params.contains_key(k),
                "{label}: {k} is not a parameter of the template"
            );
        }
        let mut stack = Self {
            name,
            template,
            params,
            conditions: BTreeMap::new(),
        };
        if let Some(conditions) = template["Conditions"].as_mapping() {
            // Conditions may refer to conditions declared later: evaluate until all are known.
            while stack.conditions.len() < conditions.len() {
                let before = stack.conditions.len();
                for (k, c) in conditions {
                    let k = text(k);
                    if !stack.conditions.contains_key(&k) {
                        if let Some(v) = stack.condition(c) {
                            stack.conditions.insert(k, v);
                        }
                    }
                }
                assert!(
                    stack.conditions.len() > before,
                    "conditions refer to each other in a cycle"
                );
            }
        }
        stack
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::StackName" => self.name.clone(),
            "AWS::Region" => "us-east-1".into(),
            "AWS::AccountId" => "123456789012".into(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::NoValue" => NO_VALUE.into(),
            _ => return None,
        })
    }

    /// A condition (or a rule assertion): `None` while a condition it names is not known yet.
    fn condition(&self, v: &Value) -> Option<bool> {
        let (f, arg) = intrinsic(v).unwrap_or_else(|| panic!("not a condition: {v:?}"));
        let list = || arg.as_sequence().unwrap().iter();
        Some(match f.as_str() {
            "Equals" => self.scalar(&arg[0]) == self.scalar(&arg[1]),
            "Not" => !self.condition(&arg[0])?,
            "And" => {
                let mut all = true;
                for c in list() {
                    all &= self.condition(c)?;
                }
                all
            }
            "Or" => {
                let mut any = false;
                for c in list() {
                    any |= self.condition(c)?;
                }
                any
            }
            "Condition" => *self.conditions.get(&text(arg))?,
            "Contains" => {
                let needle = self.scalar(&arg[1]);
                arg[0].as_sequence().unwrap().iter().any(|x| self.scalar(x) == needle)
            }
            other => panic!("{other} in a condition"),
        })
    }

    fn scalar(&self, v: &Value) -> String {
        text(&self.resolve(v))
    }

    /// A value as CloudFormation resolves it; resource attributes and references stay symbolic
    /// (`<Resource.Attribute>`, `<Resource>`): the constraints only read what parameters decide.
    fn resolve(&self, v: &Value) -> Value {
        let Some((f, arg)) = intrinsic(v) else {
            return match v {
                Value::Sequence(seq) => Value::Sequence(
                    seq.iter()
                        .map(|x| self.resolve(x))
                        .filter(|x| x.as_str() != Some(NO_VALUE))
                        .collect(),
                ),
                Value::Mapping(m) => Value::Mapping(
                    m.iter()
                        .map(|(k, x)| (k.clone(), self.resolve(x)))
                        .filter(|(_, x)| x.as_str() != Some(NO_VALUE))
                        .collect::<Mapping>(),
                ),
                other => other.clone(),
            };
        };
        match f.as_str() {
            "Ref" => {
                let name = text(arg);
                Value::String(
                    self.pseudo(&name)
                        .or_else(|| self.params.get(&name).cloned())
                        .unwrap_or_else(|| format!("<{name}>")),
                )
            }
            "GetAtt" => Value::String(match arg {
                Value::Sequence(s) => format!("<{}.{}>", text(&s[0]), text(&s[1])),
                other => format!("<{}>", text(other)),
            }),
            "If" => {
                let c = *self
                    .conditions
                    .get(&text(&arg[0]))
                    .unwrap_or_else(|| panic!("unknown condition {:?}", arg[0]));
                self.resolve(&arg[if c { 1 } else { 2 }])
            }
            "Sub" => {
                let (template, vars) = match arg {
                    Value::Sequence(seq) => (text(&seq[0]), seq[1].as_mapping()),
                    other => (text(other), None),
                };
                let mut out = String::new();
                let mut rest = template.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let end = rest[i..].find('}').unwrap() + i;
                    let name = &rest[i + 2..end];
                    let local = vars.and_then(|m| m.get(name)).map(|x| self.scalar(x));
                    out.push_str(&local.unwrap_or_else(|| {
                        self.pseudo(name)
                            .or_else(|| self.params.get(name).cloned())
                            .unwrap_or_else(|| format!("<{name}>"))
                    }));
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Value::String(out)
            }
            "FindInMap" => {
                let (m, k1, k2) = (self.scalar(&arg[0]), self.scalar(&arg[1]), self.scalar(&arg[2]));
                self.resolve(&self.template["Mappings"][m.as_str()][k1.as_str()][k2.as_str()])
            }
            "Select" => {
                let i: usize = self.scalar(&arg[0]).parse().unwrap();
                match self.resolve(&arg[1]) {
                    Value::Sequence(s) => s[i].clone(),
                    other => Value::String(format!("<select {i} of {other:?}>")),
                }
            }
            // Values only AWS knows (AZs, CIDR splits, joins of attributes): symbolic.
            other => Value::String(format!("<{other}>")),
        }
    }

    /// The resources this stack creates (their `Condition` true), resolved.
    fn resources(&self) -> BTreeMap<String, Value> {
        self.template["Resources"]
            .as_mapping()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.get("Condition").is_none_or(|c| self.conditions[&text(c)]))
            .map(|(k, r)| (text(k), self.resolve(r)))
            .collect()
    }

    /// The `Rules` assertions CloudFormation would refuse the parameters with.
    fn refused_by_rules(&self) -> Vec<String> {
        let mut refused = Vec::new();
        for (name, rule) in self.template["Rules"].as_mapping().into_iter().flatten() {
            if let Some(c) = rule.get("RuleCondition") {
                if !self.condition(c).unwrap() {
                    continue;
                }
            }
            for a in rule["Assertions"].as_sequence().unwrap() {
                if !self.condition(&a["Assert"]).unwrap() {
                    refused.push(text(name));
                }
            }
        }
        refused
    }

    fn num(&self, param: &str) -> f64 {
        self.params[param].parse().unwrap()
    }
}

fn samconfig_environments(samconfig: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    let config: toml::Value = toml::from_str(samconfig).unwrap();
    let mut envs = Vec::new();
    for (env, c) in config.as_table().unwrap() {
        let Some(global) = c.get("global").and_then(|g| g.get("parameters")) else {
            continue;
        };
        let overrides = global["parameter_overrides"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        envs.push((
            env.clone(),
            global["stack_name"].as_str().unwrap().to_string(),
            overrides,
        ));
    }
    assert!(envs.len() >= 2, "samconfig.toml: dev and prod");
    envs
}

/// Every stack the rehearsal creates: each environment as configured, then each with one
/// parameter at a time at each of its allowed values (or the ends of its range) and with the
/// longest stack name the names below allow.
fn scenarios(template: &Value, samconfig: &str) -> Vec<(BTreeMap<String, String>, String, String, bool)> {
    let mut out = Vec::new();
    for (env, stack, overrides) in samconfig_environments(samconfig) {
        out.push((overrides.clone(), stack.clone(), format!("{env} ({stack})"), true));
        for (name, p) in template["Parameters"].as_mapping().unwrap() {
            let name = text(name);
            let mut values: Vec<String> = p
                .get("AllowedValues")
                .and_then(Value::as_sequence)
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            for bound in ["MinValue", "MaxValue"] {
                if let Some(b) = p.get(bound) {
                    values.push(text(b));
                }
            }
            for v in values {
                let mut o = overrides.clone();
                o.insert(name.clone(), v.clone());
                out.push((o, stack.clone(), format!("{env} with {name}={v}"), false));
            }
        }
        let long = format!("{stack}-{}", "x".repeat(LONGEST_STACK_NAME - stack.len() - 1));
        out.push((overrides, long.clone(), format!("{env} as stack {long}"), false));
    }
    out
}

/// The longest stack name the template supports: Lambda function names are `<stack>-<binary>`
/// and at most 64 characters (`audit-reconciler`, the longest binary, leaves 47).
const LONGEST_STACK_NAME: usize = 40;

type Check = fn(&Stack, &BTreeMap<String, Value>, bool) -> Vec<String>;

/// Runs one constraint over every scenario that CloudFormation would accept (`Rules` pass).
fn run(template_text: &str, samconfig: &str, check: Check) -> Vec<String> {
    let template: Value = serde_yaml::from_str(template_text).unwrap();
    let mut problems = Vec::new();
    for (overrides, name, label, configured) in scenarios(&template, samconfig) {
        let stack = Stack::new(&template, label.clone(), name, &overrides);
        if !stack.refused_by_rules().is_empty() {
            continue; // refused before anything is created: no half-built stack
        }
        let resources = stack.resources();
        for p in check(&stack, &resources, configured) {
            problems.push(format!("{label}: {p}"));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

fn current() -> (String, String) {
    (
        std::fs::read_to_string(root().join("template.yaml")).unwrap(),
        std::fs::read_to_string(root().join("samconfig.toml")).unwrap(),
    )
}

fn assert_clean(check: Check) {
    let (template, samconfig) = current();
    let problems = run(&template, &samconfig, check);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn db_scaling(r: &BTreeMap<String, Value>) -> &Value {
    &r["DatabaseCluster"]["Properties"]["ServerlessV2ScalingConfiguration"]
}

/// (major, minor) of an Aurora PostgreSQL version such as "16.8".
fn version(v: &str) -> (u32, u32) {
    let (major, minor) = v.split_once('.').unwrap_or_else(|| panic!("version {v}"));
    (
        major.parse().unwrap(),
        minor.split('.').next().unwrap().parse().unwrap(),
    )
}

// ---- the constraints --------------------------------------------------------------------------

/// RDS refuses `SecondsUntilAutoPause` unless the minimum capacity is 0: "SecondsUntilAutoPause
/// can only be specified when minimum capacity is 0" (the RDS error, reported in sst PR #5276);
/// ServerlessV2ScalingConfigurationInfo (RDS API reference): "This property is only shown when
/// the minimum capacity for the cluster is set to 0 ACUs". Its range is 300-86,400 s
/// (AWS::RDS::DBCluster ServerlessV2ScalingConfiguration). Cross-parameter orders that no
/// `Rules` assertion can express (numbers) are checked on the configured environments only:
/// the minimum capacity at most the maximum (RDS), and `MinTasks` at most `MaxTasks`
/// (Application Auto Scaling RegisterScalableTarget: "MaxCapacity ... must be greater than or
/// equal to the minimum capacity").
fn auto_pause(stack: &Stack, r: &BTreeMap<String, Value>, configured: bool) -> Vec<String> {
    let scaling = db_scaling(r);
    let min: f64 = text(&scaling["MinCapacity"]).parse().unwrap();
    let max: f64 = text(&scaling["MaxCapacity"]).parse().unwrap();
    let mut problems = Vec::new();
    if configured && min > max {
        problems.push(format!("MinCapacity {min} > MaxCapacity {max}"));
    }
    if configured && stack.num("MinTasks") > stack.num("MaxTasks") {
        problems.push("MinTasks > MaxTasks".to_string());
    }
    if let Some(pause) = scaling.get("SecondsUntilAutoPause") {
        let pause: f64 = text(pause).parse().unwrap();
        if min != 0.0 {
            problems.push(format!(
                "SecondsUntilAutoPause {pause} with MinCapacity {min}: RDS refuses it"
            ));
        }
        if !(300.0..=86_400.0).contains(&pause) {
            problems.push(format!("SecondsUntilAutoPause {pause} outside 300-86400"));
        }
    }
    problems
}

/// Aurora PostgreSQL 16 minor versions a cluster can be created with: the release calendar
/// (Aurora PostgreSQL release notes, aurorapostgresql-release-calendar.html, minor versions
/// table: 16.8 (LTS), 16.9, 16.10, 16.11, 16.13, 16.14). 16.8 is the 16 line's long-term
/// support release (AuroraPostgreSQL.Updates.LTS.html). A minimum capacity of 0 needs 16.3 or
/// later (aurora-serverless-v2-auto-pause.html: "at least version 16.3, 15.7, 14.12, or 13.15").
/// Update this list from the calendar; the template's `DbEngineVersion` may allow only these.
const CREATABLE_VERSIONS: [&str; 6] = ["16.8", "16.9", "16.10", "16.11", "16.13", "16.14"];
const LTS_VERSION: &str = "16.8";

fn engine_version(stack: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let v = text(&r["DatabaseCluster"]["Properties"]["EngineVersion"]);
    if !CREATABLE_VERSIONS.contains(&v.as_str()) {
        problems.push(format!(
            "EngineVersion {v} is not in the release calendar's creatable versions"
        ));
    }
    let min: f64 = text(&db_scaling(r)["MinCapacity"]).parse().unwrap();
    if min == 0.0 && version(&v) < (16, 3) {
        problems.push(format!("EngineVersion {v} cannot scale to 0 ACUs (16.3 or later)"));
    }
    // Automatic minor upgrades move the cluster past the pinned version; the next deploy then
    // asks for a downgrade, which RDS refuses ("Cannot upgrade aurora-postgresql from 16.8 to
    // 16.6", sst issue #6156); the LTS guide says to turn them off to stay on an LTS minor.
    for (name, res) in r {
        if res["Type"] == "AWS::RDS::DBInstance" && res["Properties"]["AutoMinorVersionUpgrade"] != Value::Bool(false) {
            problems.push(format!("{name}: AutoMinorVersionUpgrade is not false"));
        }
    }
    if stack.template["Parameters"]["DbEngineVersion"]["Default"].as_str() != Some(LTS_VERSION) {
        problems.push(format!("DbEngineVersion's default is not the LTS {LTS_VERSION}"));
    }
    problems
}

/// Fargate task sizes (AWS::ECS::TaskDefinition `Cpu`, CloudFormation reference:
/// "256 (.25 vCPU) - Available memory values: 512 (0.5 GB), 1024 (1 GB), 2048 (2 GB);
/// 512 (.5 vCPU) - ... 1024 (1 GB), 2048 (2 GB), 3072 (3 GB), 4096 (4 GB);
/// 1024 (1 vCPU) - ... 2048 (2 GB) ... 8192 (8 GB);
/// 2048 (2 vCPU) - ... 4096 (4 GB) and 16384 (16 GB) in increments of 1024 (1 GB);
/// 4096 (4 vCPU) - ... 8192 (8 GB) and 30720 (30 GB) in increments of 1024 (1 GB)").
fn fargate_size_is_valid(cpu: u64, memory: u64) -> bool {
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (1024..=4096).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (2048..=8192).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (4096..=16384).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (8192..=30720).contains(&memory) && memory.is_multiple_of(1024),
        _ => false,
    }
}

fn fargate_size(_: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let task = &r["TaskDefinition"]["Properties"];
    let (cpu, memory) = (text(&task["Cpu"]), text(&task["Memory"]));
    if fargate_size_is_valid(cpu.parse().unwrap(), memory.parse().unwrap()) {
        Vec::new()
    } else {
        vec![format!("Fargate has no task of {cpu} CPU units with {memory} MiB")]
    }
}

/// Names AWS limits, for every name the parameters decide:
/// - stack: "must start with an alphabetic character and can't be longer than 128 characters"
///   (CloudFormation CreateStack `StackName`), letters, digits and hyphens;
/// - Lambda `FunctionName`: "If you specify only the function name, it is limited to 64
///   characters in length" (Lambda CreateFunction), `[a-zA-Z0-9-_]`;
/// - ALB and target group `Name`: "a maximum of 32 characters" (ELB CreateLoadBalancer,
///   CreateTargetGroup), alphanumerics and hyphens;
/// - IAM `RoleName`: 64 characters (IAM CreateRole);
/// - ECS task definition `Family`: "Up to 255 letters (uppercase and lowercase), numbers,
///   underscores, and hyphens" (RegisterTaskDefinition);
/// - log group names: 1-512 characters of `[.\-_/#A-Za-z0-9]` (CloudWatch Logs CreateLogGroup);
/// - Firehose `DeliveryStreamName`: 1-64 (CreateDeliveryStream);
/// - IAM role `Path` (and SAM's `RolePath`, passed to the role it makes): "a string that must
///   begin and end with forward slashes. In addition, it can contain any ASCII character from the
///   ! (\u0021) through the DEL character (\u007F)", 1-512 characters (IAM CreateRole `Path`);
/// - S3 `BucketName`: never fixed, since "Bucket names must be unique across all AWS accounts in
///   all the AWS Regions within a partition" (S3 user guide, bucketnamingrules.html): a fixed
///   name fails the second environment or a redeploy after a retained bucket.
fn names(stack: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let allowed = |s: &str, extra: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    let name = &stack.name;
    if name.len() > 128 || !name.starts_with(|c: char| c.is_ascii_alphabetic()) || !allowed(name, "-") {
        problems.push(format!("stack name {name}"));
    }
    let limits: [(&str, &str, usize, &str); 8] = [
        ("AWS::Serverless::Function", "FunctionName", 64, "-_"),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "Name", 32, "-"),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "Name", 32, "-"),
        ("AWS::IAM::Role", "RoleName", 64, "+=,.@-_"),
        ("AWS::ECS::TaskDefinition", "Family", 255, "-_"),
        ("AWS::Logs::LogGroup", "LogGroupName", 512, ".-_/#"),
        ("AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName", 64, ".-_"),
        (
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            "PolicyName",
            256,
            "-_.:/ ",
        ),
    ];
    for (res_name, res) in r {
        for (ty, prop, max, extra) in limits {
            if res["Type"] != ty {
                continue;
            }
            let Some(v) = res["Properties"].get(prop) else { continue };
            let v = text(v);
            if v.contains('<') {
                continue; // holds an attribute only AWS knows
            }
            if v.is_empty() || v.len() > max || !allowed(&v, extra) {
                problems.push(format!(
                    "{res_name}.{prop} {v:?} ({} characters, at most {max})",
                    v.len()
                ));
            }
        }
        let path = match res["Type"].as_str() {
            Some("AWS::IAM::Role") => res["Properties"].get("Path"),
            Some("AWS::Serverless::Function") => res["Properties"].get("RolePath"),
            _ => None,
        };
        if let Some(path) = path.map(text) {
            let printable = path.chars().all(|c| ('!'..='\u{7f}').contains(&c));
            if path.len() > 512 || !path.starts_with('/') || !path.ends_with('/') || !printable {
                problems.push(format!("{res_name}: role path {path:?} ({} characters)", path.len()));
            }
        }
        if res["Type"] == "AWS::S3::Bucket" && res["Properties"].get("BucketName").is_some() {
            problems.push(format!("{res_name} has a fixed BucketName"));
        }
    }
    problems
}

/// Orderings CloudFormation does not infer from references, each a documented create failure:
/// - a route through an internet gateway and an Elastic IP "must declare a dependency on the
///   VPC-gateway attachment" (CloudFormation user guide, DependsOn attribute, "When a DependsOn
///   attribute is required");
/// - an ALB with access logs, and S3 flow logs, are refused until the bucket policy lets their
///   delivery service write (ELB writes `ELBAccessLogTestFile` when access logs are enabled, ELB
///   user guide "Enable access logs"; "Access Denied for bucket");
/// - an ECS service with a target group needs the target group attached to the load balancer
///   (a listener) first: "The target group ... does not have an associated load balancer"
///   (AWS::ECS::Service reference: add a DependsOn on the listener);
/// - the schema is applied through the Data API, which needs a database instance, not only the
///   cluster (the custom resource depends on the writer).
/// - a role used by a resource must carry its policies when that resource is created: separate
///   AWS::IAM::Policy resources must be in the user's DependsOn (inline policies are created
///   with the role).
fn ordering(_: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    // Direct and implicit (Ref, GetAtt, Sub) dependencies, as the resolved text shows them.
    let bodies: BTreeMap<&String, String> = r
        .iter()
        .map(|(n, res)| (n, serde_yaml::to_string(&res["Properties"]).unwrap()))
        .collect();
    let direct: BTreeMap<&String, BTreeSet<String>> = r
        .iter()
        .map(|(name, res)| {
            let mut deps: BTreeSet<String> = match res.get("DependsOn") {
                Some(Value::String(d)) => BTreeSet::from([d.clone()]),
                Some(Value::Sequence(ds)) => ds.iter().map(text).collect(),
                _ => BTreeSet::new(),
            };
            for other in r.keys() {
                let body = &bodies[name];
                if body.contains(&format!("<{other}>")) || body.contains(&format!("<{other}.")) {
                    deps.insert(other.clone());
                }
            }
            (name, deps)
        })
        .collect();
    let depends = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for d in direct.get(&n).into_iter().flatten() {
                let d = d.clone();
                if d == to {
                    return true;
                }
                if r.contains_key(&d) && seen.insert(d.clone()) {
                    todo.push(d);
                }
            }
        }
        false
    };
    let mut need = |from: &str, to: &str, why: &str| {
        if r.contains_key(from) && r.contains_key(to) && !depends(from, to) {
            problems.push(format!("{from} must depend on {to}: {why}"));
        }
    };
    for (name, res) in r {
        let props = &bodies[name];
        let through_gateway = res["Type"] == "AWS::EC2::Route" && props.contains("<InternetGateway>");
        if through_gateway || res["Type"] == "AWS::EC2::EIP" {
            need(name, "InternetGatewayAttachment", "gateway route / Elastic IP");
        }
        if res["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer" && props.contains("access_logs.s3.enabled") {
            need(
                name,
                "LogBucketPolicy",
                "ELB tests the log bucket when access logs are enabled",
            );
        }
        if res["Type"] == "AWS::EC2::FlowLog" && props.contains("<LogBucket.Arn>") {
            need(name, "LogBucketPolicy", "flow logs to S3 need the delivery policy");
        }
        if res["Type"] == "AWS::ECS::Service" && props.contains("TargetGroupArn") {
            need(
                name,
                "HttpListener",
                "the target group must be attached to the load balancer",
            );
        }
        if res["Type"] == "Custom::DatabaseSchema" {
            need(name, "DatabaseWriter", "the Data API needs a database instance");
        }
    }
    // Separate role policies.
    for (policy, res) in r {
        if res["Type"] != "AWS::IAM::Policy" {
            continue;
        }
        for role in res["Properties"]["Roles"].as_sequence().into_iter().flatten() {
            let role = text(role).trim_matches(['<', '>']).to_string();
            for user in r.keys() {
                if user != policy && bodies[user].contains(&format!("<{role}.Arn>")) {
                    need(user, policy, "its role's policy must exist when it is created");
                }
            }
        }
    }
    problems
}

/// Deleting a stack must not fail on what it created. An ECR repository holding images fails to
/// delete unless `EmptyOnDelete` ("If false, the repository must be empty before attempting to
/// delete it", AWS::ECR::Repository): after the first push, `sam delete` and deploy.sh's recovery
/// of a failed create (delete, then create again) would end in DELETE_FAILED.
fn deletable(_: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    r.iter()
        .filter(|(_, res)| res["Type"] == "AWS::ECR::Repository")
        .filter(|(_, res)| res.get("DeletionPolicy").is_none_or(|p| p != "Retain"))
        .filter(|(_, res)| res["Properties"]["EmptyOnDelete"] != Value::Bool(true))
        .map(|(name, _)| format!("{name}: a repository with images cannot be deleted (EmptyOnDelete)"))
        .collect()
}

/// ALB access logs in Regions opened before August 2022 may use the Region's ELB account; the
/// documented list (ELB user guide, "Enable access logs", legacy bucket policy) has 22 commercial
/// Regions. The map and the legacy condition must cover exactly them, or a Region of the list
/// gets no legacy statement, and a Region outside it a principal that does not exist there.
const ELB_LOG_ACCOUNTS: [(&str, &str); 22] = [
    ("us-east-1", "127311923021"),
    ("us-east-2", "033677994240"),
    ("us-west-1", "027434742980"),
    ("us-west-2", "797873946194"),
    ("af-south-1", "098369216593"),
    ("ap-east-1", "754344448648"),
    ("ap-southeast-3", "589379963580"),
    ("ap-south-1", "718504428378"),
    ("ap-northeast-3", "383597477331"),
    ("ap-northeast-2", "600734575887"),
    ("ap-southeast-1", "114774131450"),
    ("ap-southeast-2", "783225319266"),
    ("ap-northeast-1", "582318560864"),
    ("ca-central-1", "985666609251"),
    ("eu-central-1", "054676820928"),
    ("eu-west-1", "156460612806"),
    ("eu-west-2", "652711504416"),
    ("eu-south-1", "635631232127"),
    ("eu-west-3", "009996457667"),
    ("eu-north-1", "897822967062"),
    ("me-south-1", "076674570225"),
    ("sa-east-1", "507241528517"),
];

fn elb_log_accounts(stack: &Stack, _: &BTreeMap<String, Value>, configured: bool) -> Vec<String> {
    if !configured {
        return Vec::new(); // independent of the parameters: once per environment is enough
    }
    let mut problems = Vec::new();
    let map = stack.template["Mappings"]["ElbLogAccounts"].as_mapping().unwrap();
    let mapped: BTreeMap<String, String> = map.iter().map(|(k, v)| (text(k), text(&v["Account"]))).collect();
    let documented: BTreeMap<String, String> = ELB_LOG_ACCOUNTS
        .iter()
        .map(|(r, a)| (r.to_string(), a.to_string()))
        .collect();
    if mapped != documented {
        problems.push(format!("ElbLogAccounts differs from the documented list: {mapped:?}"));
    }
    for (region, _) in ELB_LOG_ACCOUNTS {
        if !legacy_condition(stack.template, region) {
            problems.push(format!("LegacyElbRegion is false in {region}"));
        }
    }
    problems
}

/// Evaluates `LegacyElbRegion` as if the stack were in `region`.
fn legacy_condition(template: &Value, region: &str) -> bool {
    let conditions = template["Conditions"].as_mapping().unwrap();
    fn eval(conditions: &Mapping, v: &Value, region: &str) -> bool {
        let (f, arg) = intrinsic(v).unwrap();
        match f.as_str() {
            "Equals" => {
                let side = |x: &Value| match intrinsic(x) {
                    Some((f, a)) if f == "Ref" && text(a) == "AWS::Region" => region.to_string(),
                    _ => text(x),
                };
                side(&arg[0]) == side(&arg[1])
            }
            "Or" => arg.as_sequence().unwrap().iter().any(|c| eval(conditions, c, region)),
            "And" => arg.as_sequence().unwrap().iter().all(|c| eval(conditions, c, region)),
            "Not" => !eval(conditions, &arg[0], region),
            "Condition" => eval(conditions, &conditions[text(arg).as_str()], region),
            other => panic!("{other}"),
        }
    }
    eval(conditions, &conditions["LegacyElbRegion"], region)
}

/// The cost the docs state for dev assumes the cluster pauses when idle. Every pass of a scheduled
/// function that reads the request log (the reconciler, the digest function) queries it through
/// the Data API, which "resumes the writer instance if it's paused", and the troubleshooting list
/// names Data API clients "sending frequent requests so that the instance is never idle long
/// enough to pause" (aurora-serverless-v2-auto-pause.html): where the cluster may pause, the
/// passes must be further apart than the pause delay. Checked for the configured environments (a
/// parameter extreme may trade the pause away on purpose).
fn pauses_when_idle(stack: &Stack, r: &BTreeMap<String, Value>, configured: bool) -> Vec<String> {
    if !configured || text(&db_scaling(r)["MinCapacity"]).parse::<f64>().unwrap() != 0.0 {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (name, res) in r {
        let props = &res["Properties"];
        if props["Environment"]["Variables"]
            .get("TOLLGATE_DB_CLUSTER_ARN")
            .is_none()
        {
            continue;
        }
        for (_, event) in props["Events"].as_mapping().into_iter().flatten() {
            if event["Type"] == "Schedule" {
                problems.extend(queries_rarely(stack, name, &text(&event["Properties"]["Schedule"])));
            }
        }
    }
    problems
}

/// A schedule's queries leave the cluster idle long enough to pause.
fn queries_rarely(stack: &Stack, name: &str, schedule: &str) -> Vec<String> {
    let interval_s = schedule
        .strip_prefix("rate(")
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| s.split_once(' '))
        .map(|(n, unit)| {
            let n: f64 = n.parse().unwrap();
            n * match unit.trim_end_matches('s') {
                "minute" => 60.0,
                "hour" => 3600.0,
                "day" => 86_400.0,
                other => panic!("unit {other}"),
            }
        });
    let pause = stack.num("DbSecondsUntilAutoPause");
    match interval_s {
        Some(i) if i > pause => Vec::new(),
        Some(i) => vec![format!(
            "{name} queries every {i} s, the cluster pauses after {pause} s idle: it never pauses"
        )],
        None => vec![format!("{name}: schedule {schedule:?} is not a rate: cannot tell")],
    }
}

/// EventBridge schedule rules: `rate(value unit)` with a positive whole value and the unit
/// `minute(s)`, `hour(s)` or `day(s)`: "If the value is equal to 1, then the unit must be
/// singular. If the value is greater than 1, the unit must be plural. For example, rate(1 hours)
/// and rate(5 hour) are not valid" (EventBridge user guide, schedule expressions, rate
/// expressions). A `cron(...)` expression is left to cfn-lint.
fn schedules(_: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, res) in r {
        for (_, event) in res["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if event["Type"] != "Schedule" {
                continue;
            }
            let expr = text(&event["Properties"]["Schedule"]);
            let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) else {
                continue;
            };
            let valid = inner.split_once(' ').is_some_and(|(n, unit)| {
                let n: u64 = n.parse().unwrap_or(0);
                let base = unit.strip_suffix('s').unwrap_or(unit);
                n > 0 && ["minute", "hour", "day"].contains(&base) && (unit == base) == (n == 1)
            });
            if !valid {
                problems.push(format!("{name}: EventBridge refuses the schedule {expr:?}"));
            }
        }
    }
    problems
}

/// With a certificate, port 80 only redirects: the HTTP listener's one action is a permanent
/// redirect to HTTPS on 443, and no listener rule hangs off it (a rule would forward some paths
/// in plain HTTP past the redirect). Without one (dev), HTTP is the only listener.
fn http_only_redirects(stack: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let has_certificate = !stack.params["CertificateArn"].is_empty();
    let http: Vec<&String> = r
        .iter()
        .filter(|(_, res)| {
            res["Type"] == "AWS::ElasticLoadBalancingV2::Listener" && res["Properties"]["Protocol"] == "HTTP"
        })
        .map(|(n, _)| n)
        .collect();
    if !has_certificate {
        return problems;
    }
    if !r
        .values()
        .any(|res| res["Type"] == "AWS::ElasticLoadBalancingV2::Listener" && res["Properties"]["Protocol"] == "HTTPS")
    {
        problems.push("a certificate but no HTTPS listener".into());
    }
    for name in http {
        let actions = r[name]["Properties"]["DefaultActions"].as_sequence().unwrap();
        let redirect = actions.len() == 1
            && actions[0]["Type"] == "redirect"
            && actions[0]["RedirectConfig"]["Protocol"] == "HTTPS"
            && text(&actions[0]["RedirectConfig"]["Port"]) == "443"
            && actions[0]["RedirectConfig"]["StatusCode"] == "HTTP_301";
        if !redirect {
            problems.push(format!(
                "{name}: with a certificate, port 80 must only redirect to HTTPS, it has {actions:?}"
            ));
        }
        let refers = Value::String(format!("<{name}>"));
        for (rule, res) in r {
            if res["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule" && res["Properties"]["ListenerArn"] == refers
            {
                problems.push(format!(
                    "{rule}: a rule on the HTTP listener {name} bypasses the redirect"
                ));
            }
        }
    }
    problems
}

/// KMS keys as KMS creates them:
/// - a key spec allows only some key usages (KMS API reference, CreateKey `KeySpec`:
///   "ECC_NIST_EDWARDS25519 (ed25519) - signing and verification only"; SYMMETRIC_DEFAULT encrypts
///   and decrypts; HMAC keys generate and verify MACs);
/// - "You cannot enable automatic rotation of asymmetric KMS keys, HMAC KMS keys ..." (KMS API
///   reference, EnableKeyRotation): only a SYMMETRIC_DEFAULT key may have `EnableKeyRotation`;
/// - the policy lockout safety check: unless bypassed (never, here), "the key policy must allow the
///   principal making the CreateKey request to make a subsequent PutKeyPolicy request on the KMS
///   key" (CreateKey `BypassPolicyLockoutSafetyCheck`). The deploying principal is whoever runs
///   `sam deploy`, so the policy must let the account (its root, which enables IAM policies,
///   key-policy-default.html) call kms:PutKeyPolicy without a condition;
/// - "The principals in the key policy must exist and be visible to AWS KMS" (CreateKey `Policy`):
///   an AWS principal is the account or a resource the key depends on (`<Role.Arn>`), never an ARN
///   spelled out from a name that may not exist yet (roles are matched by condition instead).
fn kms_keys(_: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, res) in r {
        if res["Type"] != "AWS::KMS::Key" {
            continue;
        }
        let props = &res["Properties"];
        let spec = props
            .get("KeySpec")
            .map(text)
            .unwrap_or_else(|| "SYMMETRIC_DEFAULT".into());
        let usage = props
            .get("KeyUsage")
            .map(text)
            .unwrap_or_else(|| "ENCRYPT_DECRYPT".into());
        let usages: &[&str] = match spec.as_str() {
            "SYMMETRIC_DEFAULT" => &["ENCRYPT_DECRYPT"],
            "ECC_NIST_EDWARDS25519" => &["SIGN_VERIFY"],
            s if s.starts_with("HMAC_") => &["GENERATE_VERIFY_MAC"],
            other => {
                problems.push(format!("{name}: key spec {other} is not in this check's table"));
                continue;
            }
        };
        if !usages.contains(&usage.as_str()) {
            problems.push(format!("{name}: KMS refuses KeyUsage {usage} with KeySpec {spec}"));
        }
        if spec != "SYMMETRIC_DEFAULT" && props.get("EnableKeyRotation") == Some(&Value::Bool(true)) {
            problems.push(format!("{name}: a {spec} key cannot rotate automatically"));
        }
        if props.get("BypassPolicyLockoutSafetyCheck") == Some(&Value::Bool(true)) {
            problems.push(format!("{name}: bypasses the policy lockout safety check"));
        }
        let statements = props["KeyPolicy"]["Statement"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let root = "arn:aws:iam::123456789012:root";
        let may_put_policy = statements.iter().any(|st| {
            st["Effect"] == "Allow"
                && st.get("Condition").is_none()
                && principals(&st["Principal"]).iter().any(|p| p == root)
                && actions(st)
                    .iter()
                    .any(|a| ["kms:*", "kms:Put*", "kms:PutKeyPolicy"].contains(&a.as_str()))
        });
        if !may_put_policy {
            problems.push(format!(
                "{name}: no unconditional kms:PutKeyPolicy for the account: the lockout safety check refuses the policy"
            ));
        }
        for st in &statements {
            for p in principals(&st["Principal"]) {
                if p != "*" && p != root && !(p.starts_with('<') && p.ends_with('>')) {
                    problems.push(format!("{name}: principal {p} may not exist when the key is created"));
                }
            }
        }
    }
    problems
}

/// The AWS principals of a policy statement (`"*"`, `{AWS: ...}`), resolved.
fn principals(p: &Value) -> Vec<String> {
    match p {
        Value::String(s) => vec![s.clone()],
        Value::Mapping(m) => m
            .get("AWS")
            .map(|v| match v {
                Value::Sequence(seq) => seq.iter().map(text).collect(),
                other => vec![text(other)],
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn actions(st: &Value) -> Vec<String> {
    match &st["Action"] {
        Value::Sequence(seq) => seq.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

/// S3 Object Lock as S3 and CloudFormation take it:
/// - `ObjectLockEnabled` must be set at creation ("Indicates whether this bucket has an Object
///   Lock configuration enabled. Enable ObjectLockEnabled when you apply ObjectLockConfiguration
///   to a bucket", AWS::S3::Bucket; "You can only enable Object Lock for new buckets", S3 API
///   reference, PutObjectLockConfiguration);
/// - Object Lock works only on versioned buckets and keeps versioning on ("you can't disable
///   Object Lock or suspend versioning for that bucket", S3 user guide, object-lock.html);
/// - a default retention needs a mode and exactly one period: "The DefaultRetention settings
///   require both a mode and a period. The DefaultRetention period can be either Days or Years
///   but you must select one. You cannot specify Days and Years at the same time"
///   (PutObjectLockConfiguration), the mode GOVERNANCE or COMPLIANCE, the period positive.
fn object_lock(_: &Stack, r: &BTreeMap<String, Value>, _: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, res) in r {
        let props = &res["Properties"];
        let Some(config) = props.get("ObjectLockConfiguration") else {
            continue;
        };
        if props.get("ObjectLockEnabled") != Some(&Value::Bool(true)) {
            problems.push(format!(
                "{name}: an Object Lock configuration without ObjectLockEnabled"
            ));
        }
        if props["VersioningConfiguration"]["Status"] != "Enabled" {
            problems.push(format!("{name}: Object Lock without versioning"));
        }
        let retention = &config["Rule"]["DefaultRetention"];
        if retention.is_mapping() {
            let mode = retention.get("Mode").map(text).unwrap_or_default();
            if !["GOVERNANCE", "COMPLIANCE"].contains(&mode.as_str()) {
                problems.push(format!("{name}: default retention mode {mode:?}"));
            }
            let periods: Vec<String> = ["Days", "Years"]
                .iter()
                .filter_map(|k| retention.get(*k).map(text))
                .collect();
            if periods.len() != 1 || periods[0].parse::<u64>().unwrap_or(0) == 0 {
                problems.push(format!(
                    "{name}: default retention needs one positive period, has {periods:?}"
                ));
            }
        }
    }
    problems
}

// ---- the tests --------------------------------------------------------------------------------

#[test]
fn no_environment_sends_auto_pause_without_a_minimum_of_zero() {
    assert_clean(auto_pause);
}

#[test]
fn every_environment_creates_an_engine_version_aws_still_creates() {
    assert_clean(engine_version);
    // The template offers only creatable versions, its default the LTS.
    let (template, _) = current();
    let t: Value = serde_yaml::from_str(&template).unwrap();
    let allowed: Vec<String> = t["Parameters"]["DbEngineVersion"]["AllowedValues"]
        .as_sequence()
        .expect("DbEngineVersion lists its versions")
        .iter()
        .map(text)
        .collect();
    for v in &allowed {
        assert!(CREATABLE_VERSIONS.contains(&v.as_str()), "{v} offered, not creatable");
        assert!(version(v) >= (16, 3), "{v} cannot scale to 0");
    }
}

#[test]
fn every_environment_asks_fargate_for_a_size_it_has() {
    assert_clean(fargate_size);
    // The template's Rules refuse exactly the pairs Fargate does not have.
    let (template, samconfig) = current();
    let t: Value = serde_yaml::from_str(&template).unwrap();
    let (_, stack, overrides) = samconfig_environments(&samconfig).remove(0);
    let values = |p: &str| -> Vec<String> {
        t["Parameters"][p]["AllowedValues"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(text)
            .collect()
    };
    let mut checked = 0;
    for cpu in values("ContainerCpu") {
        for memory in values("ContainerMemory") {
            let mut o = overrides.clone();
            o.insert("ContainerCpu".into(), cpu.clone());
            o.insert("ContainerMemory".into(), memory.clone());
            let s = Stack::new(&t, format!("{cpu}/{memory}"), stack.clone(), &o);
            let valid = fargate_size_is_valid(cpu.parse().unwrap(), memory.parse().unwrap());
            assert_eq!(
                s.refused_by_rules().is_empty(),
                valid,
                "{cpu} CPU units / {memory} MiB: Rules accept it = {}",
                !valid
            );
            checked += 1;
        }
    }
    assert!(checked >= 25);
}

#[test]
fn every_name_fits_its_limit() {
    assert_clean(names);
    let (_, samconfig) = current();
    for (env, stack, _) in samconfig_environments(&samconfig) {
        assert!(
            stack.len() <= LONGEST_STACK_NAME,
            "{env}: stack {stack} longer than {LONGEST_STACK_NAME}"
        );
    }
}

#[test]
fn resources_that_need_an_order_have_it() {
    assert_clean(ordering);
}

#[test]
fn every_resource_can_be_deleted_with_the_stack() {
    assert_clean(deletable);
}

#[test]
fn alb_log_delivery_covers_every_documented_region() {
    assert_clean(elb_log_accounts);
}

#[test]
fn every_schedule_is_one_eventbridge_takes() {
    assert_clean(schedules);
}

#[test]
fn every_kms_key_is_one_kms_creates() {
    assert_clean(kms_keys);
    // The check sees an asymmetric key with automatic rotation, and a policy the lockout safety
    // check would refuse (the account may not put the policy again).
    let (template, samconfig) = current();
    let rotating = template.replacen(
        "      KeyUsage: SIGN_VERIFY\n      EnableKeyRotation: false\n",
        "      KeyUsage: SIGN_VERIFY\n      EnableKeyRotation: true\n",
        1,
    );
    assert_ne!(rotating, template, "the log key moved: update this test");
    assert!(run(&rotating, &samconfig, kms_keys)
        .iter()
        .any(|p| p.contains("LogKey: a ECC_NIST_EDWARDS25519 key cannot rotate")));
    let locked_out = template.replacen("              - kms:Put*\n", "", 1);
    assert_ne!(
        locked_out, template,
        "the log key's admin actions moved: update this test"
    );
    assert!(run(&locked_out, &samconfig, kms_keys)
        .iter()
        .any(|p| p.contains("LogKey: no unconditional kms:PutKeyPolicy")));
}

#[test]
fn every_object_lock_bucket_is_one_s3_creates() {
    assert_clean(object_lock);
    let (template, samconfig) = current();
    let unversioned = template.replacen(
        "      VersioningConfiguration:\n        Status: Enabled\n      ObjectLockEnabled: true\n",
        "      VersioningConfiguration:\n        Status: Suspended\n      ObjectLockEnabled: true\n",
        1,
    );
    assert_ne!(unversioned, template, "the trail bucket moved: update this test");
    assert!(run(&unversioned, &samconfig, object_lock)
        .iter()
        .any(|p| p.contains("TrailBucket: Object Lock without versioning")));
}

#[test]
fn the_dev_database_can_pause() {
    assert_clean(pauses_when_idle);
}

#[test]
fn port_80_only_redirects_whenever_a_certificate_is_given() {
    assert_clean(http_only_redirects);
    // The check sees a forward on port 80 with a certificate.
    let (template, samconfig) = current();
    let broken = template.replacen(
        "        - - Type: redirect\n            RedirectConfig:\n              Protocol: HTTPS",
        "        - - Type: forward\n            TargetGroupArn: !Ref TargetGroup\n          - Type: redirect\n            RedirectConfig:\n              Protocol: HTTPS",
        1,
    );
    assert_ne!(broken, template, "the HTTP listener's redirect moved: update this test");
    assert!(!run(&broken, &samconfig, http_only_redirects).is_empty());
}

/// Every environment of samconfig.toml is one CloudFormation accepts (its `Rules` pass): the
/// scenarios above skip refused parameter sets, so a refused environment would pass unchecked.
#[test]
fn every_configured_environment_passes_the_rules() {
    let (template, samconfig) = current();
    let t: Value = serde_yaml::from_str(&template).unwrap();
    for (env, stack, overrides) in samconfig_environments(&samconfig) {
        let s = Stack::new(&t, env.clone(), stack, &overrides);
        assert!(
            s.refused_by_rules().is_empty(),
            "{env}: refused by {:?}",
            s.refused_by_rules()
        );
    }
}

/// prod has a certificate in samconfig.toml, and the template refuses prod without one (so port
/// 80 in prod only ever redirects).
#[test]
fn prod_requires_a_certificate() {
    let (template, samconfig) = current();
    let t: Value = serde_yaml::from_str(&template).unwrap();
    let envs = samconfig_environments(&samconfig);
    let (_, stack, overrides) = envs.iter().find(|(e, _, _)| e == "prod").expect("a prod environment");
    assert!(
        overrides
            .get("CertificateArn")
            .is_some_and(|c| c.starts_with("arn:aws:acm:")),
        "samconfig.toml's prod has no CertificateArn"
    );
    let mut without = overrides.clone();
    without.insert("CertificateArn".into(), String::new());
    let s = Stack::new(&t, "prod without a certificate".into(), stack.clone(), &without);
    assert_eq!(s.refused_by_rules(), vec!["ProdHasCertificate".to_string()]);
    // ALB OIDC needs HTTPS too: dev (no certificate) with an issuer is refused.
    let (_, dev_stack, dev) = envs.iter().find(|(e, _, _)| e == "default").unwrap();
    let mut oidc = dev.clone();
    for (k, v) in [
        ("AlbOidcIssuer", "https://idp.example.com"),
        ("AlbOidcAuthorizationEndpoint", "https://idp.example.com/authorize"),
        ("AlbOidcTokenEndpoint", "https://idp.example.com/token"),
        ("AlbOidcUserInfoEndpoint", "https://idp.example.com/userinfo"),
        ("AlbOidcClientId", "tollgate"),
        (
            "AlbOidcClientSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:oidc",
        ),
    ] {
        oidc.insert(k.into(), v.into());
    }
    let s = Stack::new(&t, "dev with ALB OIDC".into(), dev_stack.clone(), &oidc);
    assert_eq!(s.refused_by_rules(), vec!["AlbOidcIsComplete".to_string()]);
    oidc.insert(
        "CertificateArn".into(),
        "arn:aws:acm:us-east-1:123456789012:certificate/x".into(),
    );
    let s = Stack::new(&t, "dev with ALB OIDC and HTTPS".into(), dev_stack.clone(), &oidc);
    assert!(s.refused_by_rules().is_empty());
    assert!(s.resources().contains_key("RequestsOidcRule"));
    // With HTTPS and OIDC, port 80 still only redirects.
    assert!(http_only_redirects(&s, &s.resources(), true).is_empty());
}

/// The rehearsal is only worth running if it catches what it is for: on the template and
/// samconfig before issue 13's fixes, each finding of the issue is reported by its check.
#[test]
fn the_rehearsal_fails_on_the_template_of_d5f4915() {
    let show = |path: &str| {
        let out = std::process::Command::new("git")
            .args(["show", &format!("d5f4915:{path}")])
            .current_dir(root())
            .output()
            .expect("git is needed to read the old template");
        assert!(
            out.status.success(),
            "git show d5f4915:{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (template, samconfig) = (show("template.yaml"), show("samconfig.toml"));
    let expect = |check: Check, finding: &str| {
        let problems = run(&template, &samconfig, check);
        assert!(
            problems.iter().any(|p| p.contains(finding)),
            "expected {finding:?} on d5f4915, got {problems:#?}"
        );
    };
    expect(
        auto_pause,
        "prod (tollgate-prod): SecondsUntilAutoPause 900 with MinCapacity 0.5",
    );
    expect(engine_version, "EngineVersion 16.6 is not in the release calendar");
    expect(engine_version, "DbEngineVersion's default is not the LTS");
    expect(deletable, "Repository: a repository with images cannot be deleted");
    expect(elb_log_accounts, "LegacyElbRegion is false in ap-southeast-3");
    expect(
        pauses_when_idle,
        "default (tollgate-dev): AuditReconcilerFunction queries every 300 s",
    );
    // The old template let Fargate sizes through that ECS refuses (no Rules).
    expect(fargate_size, "Fargate has no task of 256 CPU units with 3072 MiB");
    // What passed then still passes: the checks do not simply reject everything.
    assert!(run(&template, &samconfig, ordering).is_empty());
    assert!(run(&template, &samconfig, names).is_empty());
}

/// Whether a `.dockerignore` pattern excludes `path` (relative to the context): Go's
/// `filepath.Match` per path segment after `filepath.Clean` (so `target/` is `target`), plus
/// Docker's `**`, which "matches any number of directories (including zero)"; patterns are rooted
/// at the context ("the patterns /foo/bar and foo/bar both exclude a file or directory named bar
/// in the foo subdirectory ... Neither excludes anything else", Dockerfile reference,
/// .dockerignore file). A directory excluded excludes what is under it.
fn dockerignore_excludes(pattern: &str, path: &str) -> bool {
    fn segment(p: &str, s: &str) -> bool {
        match (p.chars().next(), s.chars().next()) {
            (None, None) => true,
            (Some('*'), _) => {
                segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[s.chars().next().unwrap().len_utf8()..]))
            }
            (Some(a), Some(b)) if a == b || a == '?' => segment(&p[a.len_utf8()..], &s[b.len_utf8()..]),
            _ => false,
        }
    }
    fn parts(p: &[&str], s: &[&str]) -> bool {
        match p.first() {
            None => true, // the pattern matched a directory above the path
            Some(&"**") => (0..=s.len()).any(|i| parts(&p[1..], &s[i..])),
            Some(first) => !s.is_empty() && segment(first, s[0]) && parts(&p[1..], &s[1..]),
        }
    }
    let pattern: Vec<&str> = pattern.trim().trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    parts(&pattern, &path)
}

/// The image's build context leaves out every build output: Cargo's `target` at the root and
/// any nested one (a crate built outside the workspace), or `docker build` ships gigabytes of
/// them (issue 13).
fn context_excludes_targets(dockerignore: &str) -> Vec<String> {
    let patterns: Vec<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .collect();
    [
        "target",
        "target/debug/tollgate",
        "functions/echo/target",
        "functions/echo/target/release/echo",
    ]
    .iter()
    .filter(|p| !patterns.iter().any(|pat| dockerignore_excludes(pat, p)))
    .map(|p| format!(".dockerignore lets {p} into the build context"))
    .collect()
}

#[test]
fn the_image_build_context_has_no_target_directories() {
    assert!(
        dockerignore_excludes("**/*.log", "a/b/c.log") && !dockerignore_excludes("target/", "functions/echo/target")
    );
    let now = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert_eq!(context_excludes_targets(&now), Vec::<String>::new());
    let old = std::process::Command::new("git")
        .args(["show", "d5f4915:.dockerignore"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(old.status.success());
    let problems = context_excludes_targets(&String::from_utf8(old.stdout).unwrap());
    assert!(
        problems.iter().any(|p| p.contains("functions/echo/target")),
        "d5f4915's .dockerignore: {problems:?}"
    );
}
