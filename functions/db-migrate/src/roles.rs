//! Least-privilege database roles, kept by db-migrate after the migrations on every Create and
//! Update: a reader for requests-api and a writer for the ingress, the audit writer and the
//! reconciler, each logging in with the username and password of its own Secrets Manager secret
//! (template.yaml: ReaderDbSecret, WriterDbSecret). Only db-migrate uses the master secret.
//!
//! Idempotent: a role is created if missing, its password set on every run (a changed secret
//! takes effect on the next deploy that runs db-migrate), and its privileges reset to exactly the
//! grants below (everything on the schema's tables revoked first, so a grant removed here is
//! removed from the database too).
//!
//! The password never appears in a statement's text: it is a bind parameter of
//! `set_config(..., true)` (local to the transaction) that the `ALTER ROLE` in a `DO` block reads
//! back with `current_setting`, so a failing statement logged by PostgreSQL (Aurora exports the
//! postgresql log) or reported in an error carries no password.

use tollgate_core::ports::SqlStep;

/// What a role may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// requests-api: reads the request log (`query`, `get`: SELECT on api_requests) and the
    /// transparency log's state (the proof route); never the keys table, never a write.
    Reader,
    /// The ingress (records and write-ahead intents: INSERT ... ON CONFLICT ... RETURNING, the
    /// intent's UPDATE; API key lookups: SELECT on api_keys), the audit writer (marks rows
    /// audited: UPDATE) and the reconciler (scans, counts re-drives, finalizes intents: SELECT,
    /// UPDATE). No DELETE, no DDL, no write to api_keys (keys are made and revoked by an
    /// operator with the master secret: `tollgate keys`).
    Writer,
}

/// A login role and its password (from its secret).
#[derive(Clone)]
pub struct Role {
    /// The role's name (the secret's `username`).
    pub name: String,
    /// The role's password (the secret's `password`).
    pub password: String,
    /// What it may do.
    pub access: Access,
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Role")
            .field("name", &self.name)
            .field("password", &"[redacted]")
            .field("access", &self.access)
            .finish()
    }
}

/// The table privileges of each access level: (table, privileges).
pub fn grants(access: Access) -> &'static [(&'static str, &'static str)] {
    match access {
        // The proof route reads the log's state (its size and checkpoint).
        Access::Reader => &[
            ("api_requests", "SELECT"),
            ("tlog_sequencer", "SELECT"),
            ("tlog_state", "SELECT"),
        ],
        // Marking sequences (tlog_mark_audited locks and advances tlog_sequencer: FOR UPDATE
        // needs UPDATE) and integration advances tlog_state.
        Access::Writer => &[
            ("api_requests", "SELECT, INSERT, UPDATE"),
            ("api_keys", "SELECT"),
            ("tlog_sequencer", "SELECT, UPDATE"),
            ("tlog_state", "SELECT, UPDATE"),
        ],
    }
}

/// A role name safe to put in SQL unquoted and quoted alike: a lowercase PostgreSQL identifier
/// that is not a reserved role prefix.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
        && !name.starts_with("pg_")
        && !name.starts_with("rds")
}

/// The statements that make `roles` exist with exactly their privileges on `database`.
pub fn script(roles: &[Role], database: &str) -> Result<Vec<SqlStep>, String> {
    if !valid_name(database) {
        return Err(format!("database name {database:?} is not a plain identifier"));
    }
    let mut steps = vec![
        // PostgreSQL 15+ already keeps CREATE on public from PUBLIC; older clusters did not.
        step("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
    ];
    for role in roles {
        if !valid_name(&role.name) {
            return Err(format!("role name {:?} is not a plain lowercase identifier", role.name));
        }
        if role.password.len() < 16 {
            return Err(format!(
                "the password of role {} is shorter than 16 characters",
                role.name
            ));
        }
        let name = &role.name;
        steps.push(SqlStep {
            sql: "SELECT set_config('tollgate.role_password', :password, true)".into(),
            params: vec![("password".into(), role.password.clone())],
        });
        // LOGIN and a password only: SUPERUSER, REPLICATION and BYPASSRLS are off for a new role,
        // and naming them at all needs a superuser, which Aurora's master user is not.
        steps.push(step(&format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') THEN \
                 CREATE ROLE \"{name}\" LOGIN NOINHERIT; \
               END IF; \
               EXECUTE format('ALTER ROLE %I WITH LOGIN NOINHERIT PASSWORD %L', '{name}', \
                 current_setting('tollgate.role_password')); \
             END $$"
        )));
        steps.push(step("SELECT set_config('tollgate.role_password', '', true)"));
        steps.push(step(&format!(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \"{name}\""
        )));
        steps.push(step(&format!("GRANT CONNECT ON DATABASE \"{database}\" TO \"{name}\"")));
        steps.push(step(&format!("GRANT USAGE ON SCHEMA public TO \"{name}\"")));
        for (table, privileges) in grants(role.access) {
            steps.push(step(&format!("GRANT {privileges} ON {table} TO \"{name}\"")));
        }
    }
    Ok(steps)
}

fn step(sql: &str) -> SqlStep {
    SqlStep {
        sql: sql.to_string(),
        params: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_statement_text_holds_a_password() {
        let roles = [
            Role {
                name: "tollgate_reader".into(),
                password: "p4ssw0rd-of-the-reader-0123".into(),
                access: Access::Reader,
            },
            Role {
                name: "tollgate_writer".into(),
                password: "p4ssw0rd-of-the-writer-0123".into(),
                access: Access::Writer,
            },
        ];
        let steps = script(&roles, "tollgate").unwrap();
        for s in &steps {
            assert!(!s.sql.contains("p4ssw0rd"), "{}", s.sql);
            assert!(!format!("{s:?}").contains("p4ssw0rd"));
        }
        assert!(!format!("{roles:?}").contains("p4ssw0rd"));
        assert_eq!(steps.iter().filter(|s| !s.params.is_empty()).count(), 2);
    }

    #[test]
    fn names_are_plain_identifiers() {
        for bad in [
            "",
            "Reader",
            "a-b",
            "x'; DROP TABLE api_requests; --",
            "pg_monitor",
            "rdsadmin",
            "1a",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("tollgate_reader"));
        let role = Role {
            name: "bad\"name".into(),
            password: "0123456789abcdef".into(),
            access: Access::Reader,
        };
        assert!(script(&[role], "tollgate").is_err());
    }
}
