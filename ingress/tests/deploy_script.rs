//! `scripts/deploy.sh` against recording fakes of `aws`, `sam` and `docker` (no AWS account here):
//! the exact calls it makes on a clean account, on one whose first create failed
//! (`ROLLBACK_COMPLETE`), in a dry run, and that it stops on states it must not deploy over.
//! The clean-account and ROLLBACK_COMPLETE sequences are the ones docs/operations.md shows.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One fake for the three commands: appends `<command> <args>` to `$FAKE_STATE/calls` and answers
/// from the account's state (`stack`: its status; `ecs-role`: the service-linked role exists).
const FAKE: &str = r#"#!/usr/bin/env bash
name="$(basename "$0")"
state="$FAKE_STATE"
# `aws ecr get-login-password | docker login`: both start at once; docker's call is recorded once
# it has read the password, so after the one it comes from.
if [ "$name $1" = "docker login" ]; then cat >/dev/null; fi
echo "$name $*" >>"$state/calls"
case "$name $1 $2" in
    "aws cloudformation describe-stacks")
        if [ ! -f "$state/stack" ]; then
            echo "An error occurred (ValidationError) when calling the DescribeStacks operation: Stack with id $4 does not exist" >&2
            exit 254
        fi
        if [ "$(cat "$state/stack")" = EXPIRED ]; then
            echo "An error occurred (ExpiredToken) when calling the DescribeStacks operation: The security token included in the request is expired" >&2
            exit 254
        fi
        case "$*" in
            *StackStatus*) cat "$state/stack" ;;
            *RepositoryUri*) echo "123456789012.dkr.ecr.us-east-1.amazonaws.com/tollgate-dev-repository" ;;
            *ApiUrl*) echo "http://tollgate-dev.example" ;;
            *) exit 99 ;;
        esac ;;
    "aws cloudformation delete-stack") rm -f "$state/stack" ;;
    "aws cloudformation wait") ;;
    "aws iam get-role")
        [ -f "$state/ecs-role" ] || { echo "An error occurred (NoSuchEntity) when calling the GetRole operation" >&2; exit 254; } ;;
    "aws iam create-service-linked-role") touch "$state/ecs-role" ;;
    "aws ecr describe-images") echo "An error occurred (ImageNotFoundException)" >&2; exit 254 ;;
    "aws ecr get-login-password") echo password ;;
    "sam build "*) ;;
    "sam deploy "*)
        if [[ " $* " == *" --no-execute-changeset "* ]]; then
            [ -f "$state/stack" ] || echo REVIEW_IN_PROGRESS >"$state/stack"
        else
            echo UPDATE_COMPLETE >"$state/stack"
        fi ;;
    "docker login "*) ;;
    "docker buildx "*) ;;
    *) echo "fake: unexpected call: $name $*" >&2; exit 99 ;;
esac
"#;

struct Run {
    calls: Vec<String>,
    ok: bool,
    output: String,
}

/// Runs deploy.sh with `args` on an account in `stack` state (`None`: no stack) and
/// with or without the ECS service-linked role; the calls with samconfig's overrides written
/// `<overrides>`.
fn deploy(args: &[&str], stack: Option<&str>, ecs_role: bool) -> Run {
    let dir = std::env::temp_dir().join(format!("tollgate-deploy-{}", uuid::Uuid::new_v4()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("fake");
    std::fs::write(&fake, FAKE).unwrap();
    for tool in ["aws", "sam", "docker"] {
        std::os::unix::fs::symlink(&fake, bin.join(tool)).unwrap();
    }
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    if let Some(s) = stack {
        std::fs::write(dir.join("stack"), format!("{s}\n")).unwrap();
    }
    if ecs_role {
        std::fs::write(dir.join("ecs-role"), "").unwrap();
    }
    let out = Command::new("bash")
        .arg(root().join("scripts/deploy.sh"))
        .args(args)
        .current_dir(root())
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
        .env("TOLLGATE_DEPLOY_USE_PATH", "1")
        .env("FAKE_STATE", &dir)
        .output()
        .unwrap();
    let overrides = samconfig_overrides("default");
    let calls = std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.replace(&overrides, "<overrides>"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        calls,
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn samconfig_overrides(env: &str) -> String {
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("samconfig.toml")).unwrap()).unwrap();
    config[env]["global"]["parameters"]["parameter_overrides"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The fenced block after `<!-- deploy.sh calls: NAME -->` in docs/operations.md.
fn documented(name: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let marker = format!("<!-- deploy.sh calls: {name} -->");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/operations.md has no {marker}"));
    let block = &doc[start + marker.len()..];
    let body = &block[block.find("```").unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].lines().map(String::from).collect()
}

fn assert_calls(run: &Run, expected: &[String]) {
    assert!(run.ok, "deploy.sh failed:\n{}", run.output);
    assert_eq!(run.calls, expected, "deploy.sh's calls\n{}", run.output);
}

#[test]
fn a_clean_account_gets_the_service_linked_role_then_two_deploys() {
    let run = deploy(&["dev", "abc123"], None, false);
    assert_calls(&run, &documented("clean account"));
    assert!(run
        .calls
        .iter()
        .any(|c| c.contains("create-service-linked-role --aws-service-name ecs.amazonaws.com")));
    // The role exists already: not created again.
    let again = deploy(&["dev", "abc123"], None, true);
    assert!(again.ok, "{}", again.output);
    assert!(!again.calls.iter().any(|c| c.contains("create-service-linked-role")));
}

#[test]
fn a_failed_first_create_is_said_deleted_and_created_again() {
    let run = deploy(&["dev", "abc123"], Some("ROLLBACK_COMPLETE"), true);
    assert_calls(&run, &documented("ROLLBACK_COMPLETE"));
    assert!(run.output.contains("ROLLBACK_COMPLETE"), "{}", run.output);
}

#[test]
fn a_dry_run_makes_only_a_change_set() {
    let run = deploy(&["--dry-run", "dev", "abc123"], None, false);
    assert_calls(
        &run,
        &[
            "sam build --config-env default".to_string(),
            "aws cloudformation describe-stacks --stack-name tollgate-dev --query Stacks[0].StackStatus --output text"
                .to_string(),
            "aws iam get-role --role-name AWSServiceRoleForECS".to_string(),
            "sam deploy --config-env default --no-confirm-changeset --parameter-overrides <overrides> --no-execute-changeset"
                .to_string(),
        ],
    );
    // On a deployed stack: the change set of the new image, nothing pushed.
    let run = deploy(&["--dry-run", "dev", "abc123"], Some("UPDATE_COMPLETE"), true);
    assert!(run.ok, "{}", run.output);
    assert_eq!(
        run.calls.last().unwrap(),
        "sam deploy --config-env default --no-confirm-changeset --parameter-overrides <overrides> ImageTag=abc123 --no-execute-changeset"
    );
    assert!(!run
        .calls
        .iter()
        .any(|c| c.starts_with("docker") || c.contains("delete-stack")));
    // The REVIEW_IN_PROGRESS stack a dry run leaves is a clean account to the next deploy.
    let run = deploy(&["dev", "abc123"], Some("REVIEW_IN_PROGRESS"), true);
    assert!(run.ok, "{}", run.output);
    assert!(run.calls.iter().filter(|c| c.starts_with("sam deploy")).count() == 2);
    // A dry run on a failed first create says what a deploy would do, and changes nothing.
    let run = deploy(&["--dry-run", "dev", "abc123"], Some("ROLLBACK_COMPLETE"), true);
    assert!(run.ok && run.output.contains("would delete"), "{}", run.output);
    assert!(!run
        .calls
        .iter()
        .any(|c| c.contains("delete-stack") || c.starts_with("sam deploy")));
}

#[test]
fn states_it_cannot_deploy_over_stop_it_with_what_to_do() {
    for (state, says) in [
        ("ROLLBACK_FAILED", "delete-stack"),
        ("DELETE_FAILED", "delete-stack"),
        ("UPDATE_ROLLBACK_FAILED", "continue-update-rollback"),
        ("UPDATE_IN_PROGRESS", "another operation is running"),
        ("EXPIRED", "cannot read the state"),
    ] {
        let run = deploy(&["dev", "abc123"], Some(state), true);
        assert!(!run.ok, "{state}: deploy.sh succeeded:\n{}", run.output);
        assert!(run.output.contains(says), "{state}: {}", run.output);
        assert!(
            !run.calls
                .iter()
                .any(|c| c.starts_with("sam deploy") || c.contains("delete-stack")),
            "{state}: {:?}",
            run.calls
        );
    }
    // An unknown environment is refused before any call; so is prod while samconfig.toml still
    // holds the placeholder certificate it ships with.
    let run = deploy(&["staging"], None, true);
    assert!(!run.ok && run.calls.is_empty());
    let run = deploy(&["prod", "abc123"], Some("CREATE_COMPLETE"), true);
    assert!(!run.ok && run.calls.is_empty(), "{:?}", run.calls);
    assert!(
        run.output.contains("CertificateArn is the placeholder"),
        "{}",
        run.output
    );
}

#[test]
fn the_script_is_valid_bash() {
    for script in ["scripts/deploy.sh", "scripts/teardown.sh"] {
        assert!(Path::new(&root().join(script)).exists(), "{script}");
        let status = Command::new("bash")
            .args(["-n", script])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }
}
