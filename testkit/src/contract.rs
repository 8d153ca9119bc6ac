//! The contract every adapter of a port must meet, as runnable checks. Each adapter's tests
//! call these against a fresh instance, so the embedded default cannot drift from aws mode.

use bytes::Bytes;
use time::OffsetDateTime;
use tollgate_core::model::{AuditedEvent, InsertOutcome, NewRecord, RecordQuery, RequestRecord};
use tollgate_core::ports::{ObjectStore, PutOutcome, RequestLog, TlogStore};

/// The batch every contract row is assigned to.
const BATCH: &str = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";

fn record(id: &str, at: OffsetDateTime, status: u16, method: &str, path: &str) -> NewRecord {
    NewRecord {
        record: RequestRecord {
            request_id: id.to_string(),
            event_id: uuid::Uuid::new_v4().to_string(),
            trace_id: Some("Root=1-00000000-000000000000000000000000".into()),
            received_at: at,
            method: method.into(),
            path: path.into(),
            query: Some("a=1".into()),
            route: Some("/v1/echo".into()),
            function_name: Some("echo".into()),
            status,
            latency_ms: 1.25,
            client_ip: Some("192.0.2.1".into()),
            user_agent: Some("contract".into()),
            principal: if status == 200 { Some("alice".into()) } else { None },
            principal_kind: if status == 200 {
                tollgate_core::access::PrincipalKind::ApiKey
            } else {
                tollgate_core::access::PrincipalKind::Anonymous
            },
            principal_name: (status == 200).then(|| "Alice's key".into()),
            scopes: if status == 200 {
                vec!["requests:read:own".into(), "orders:write".into()]
            } else {
                Vec::new()
            },
            access: if status == 200 {
                "allowed:scope=requests:read:own".into()
            } else {
                "refused:unknown_key".into()
            },
            request_bytes: 3,
            response_bytes: 4,
            error_code: None,
        },
        audit_batch: BATCH.into(),
        audit_payload: format!("{{\"request_id\":\"{id}\"}}"),
        client_chosen_id: true,
        intent: false,
    }
}

/// A plain unaudited record for tests: `GET /v1/echo` answered 200 now, assigned to
/// `audit_batch`, with a minimal audit event naming the request in the outbox.
pub fn sample_record(request_id: &str, audit_batch: &str) -> NewRecord {
    NewRecord {
        record: RequestRecord {
            request_id: request_id.into(),
            event_id: uuid::Uuid::new_v4().to_string(),
            trace_id: None,
            received_at: tollgate_core::clock::now(),
            method: "GET".into(),
            path: "/v1/echo".into(),
            query: None,
            route: Some("/v1/echo".into()),
            function_name: Some("echo".into()),
            status: 200,
            latency_ms: 1.0,
            client_ip: None,
            user_agent: None,
            principal: None,
            principal_kind: Default::default(),
            principal_name: None,
            scopes: Vec::new(),
            access: "allowed:auth=none".into(),
            request_bytes: 0,
            response_bytes: 0,
            error_code: None,
        },
        audit_batch: audit_batch.into(),
        audit_payload: format!("{{\"event_version\":\"1\",\"request_id\":\"{request_id}\"}}"),
        client_chosen_id: false,
        intent: false,
    }
}

/// An event to mark with a recognizable fake leaf hash (`tag` in every byte but the first).
pub fn audited(request_id: &str, tag: u8) -> AuditedEvent {
    let mut leaf_hash = [tag; 32];
    leaf_hash[0] = request_id.len() as u8;
    AuditedEvent {
        request_id: request_id.into(),
        leaf_hash,
    }
}

/// The `RequestLog` contract. `log` must be empty.
pub async fn request_log(log: &dyn RequestLog) {
    let t0 = tollgate_core::clock::parse_rfc3339("2026-01-01T00:00:00Z").expect("valid");
    let ms = |n: i64| t0 + time::Duration::milliseconds(n);
    let rows: Vec<NewRecord> = (0..10)
        .map(|i| {
            let status = if i % 2 == 0 { 200 } else { 404 };
            let method = if i % 3 == 0 { "POST" } else { "GET" };
            record(&format!("r{i:02}"), ms(i), status, method, &format!("/v1/echo/{i}"))
        })
        .collect();
    // Insert, and insert again: a retried batch is idempotent.
    let out = log.insert_batch(&rows).await.expect("insert");
    assert!(out.iter().all(|o| *o == InsertOutcome::Inserted), "{out:?}");
    let out = log.insert_batch(&rows[..3]).await.expect("re-insert");
    // An adapter may not tell "inserted now" from "inserted by the earlier attempt" (the Data
    // API's BatchExecuteStatement reports no row counts); both mean the event is stored once.
    assert!(
        out.iter()
            .all(|o| matches!(o, InsertOutcome::AlreadyPresent | InsertOutcome::Inserted)),
        "{out:?}"
    );
    assert_eq!(
        log.query(&RecordQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("q")
        .len(),
        10
    );
    // A different event under a taken request id is a conflict, and changes nothing.
    let mut clash = record("r00", ms(50), 500, "GET", "/other");
    clash.record.event_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        log.insert_batch(&[clash]).await.expect("clash"),
        vec![InsertOutcome::IdConflict]
    );
    let got = log.get("r00").await.expect("get").expect("present");
    assert_eq!(got.record, rows[0].record, "row round-trips exactly");
    assert_eq!(
        got.audit_payload.as_deref(),
        Some("{\"request_id\":\"r00\"}"),
        "outbox text kept exactly"
    );
    assert_eq!(got.audit_key, None);
    assert!(log.get("missing").await.expect("get").is_none());

    // Newest first, filters, paging.
    let all = log
        .query(&RecordQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("query");
    let ids: Vec<&str> = all.iter().map(|r| r.record.request_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["r09", "r08", "r07", "r06", "r05", "r04", "r03", "r02", "r01", "r00"]
    );
    let q = RecordQuery {
        status: Some(404),
        method: Some("GET".into()),
        limit: 100,
        ..Default::default()
    };
    let ids: Vec<String> = log
        .query(&q)
        .await
        .expect("q")
        .into_iter()
        .map(|r| r.record.request_id)
        .collect();
    assert_eq!(ids, vec!["r07", "r05", "r01"]);
    let q = RecordQuery {
        since: Some(ms(2)),
        until: Some(ms(5)),
        limit: 100,
        ..Default::default()
    };
    let ids: Vec<String> = log
        .query(&q)
        .await
        .expect("q")
        .into_iter()
        .map(|r| r.record.request_id)
        .collect();
    assert_eq!(ids, vec!["r04", "r03", "r02"]);
    let q = RecordQuery {
        path_prefix: Some("/v1/echo/1".into()),
        principal: None,
        limit: 100,
        ..Default::default()
    };
    assert_eq!(log.query(&q).await.expect("q").len(), 1);
    let q = RecordQuery {
        principal: Some("alice".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(log.query(&q).await.expect("q").len(), 5);
    let q = RecordQuery {
        path_prefix: Some("/v1/ech_".into()),
        limit: 100,
        ..Default::default()
    };
    assert!(
        log.query(&q).await.expect("q").is_empty(),
        "LIKE wildcards must be escaped"
    );
    let page1 = log
        .query(&RecordQuery {
            limit: 4,
            ..Default::default()
        })
        .await
        .expect("p1");
    let last = &page1.last().expect("rows").record;
    let page2 = log
        .query(&RecordQuery {
            limit: 4,
            after: Some((last.received_at, last.request_id.clone())),
            ..Default::default()
        })
        .await
        .expect("p2");
    assert_eq!(page2.first().map(|r| r.record.request_id.as_str()), Some("r05"));

    // The outbox: pending until marked, marking is once only.
    let pending = log.pending_audits(ms(3), 5, 100).await.expect("pending");
    let ids: Vec<&str> = pending.iter().map(|p| p.request_id.as_str()).collect();
    assert_eq!(ids, vec!["r00", "r01", "r02"], "oldest first, before the cutoff");
    assert_eq!(pending[0].audit_batch, BATCH);
    let marked = log
        .mark_audited("k1", &[audited("r00", 0), audited("r01", 1)])
        .await
        .expect("mark");
    assert_eq!(marked, 2);
    assert_eq!(
        log.mark_audited("k2", &[audited("r00", 0)]).await.expect("mark again"),
        0
    );
    let got = log.get("r00").await.expect("get").expect("present");
    assert_eq!(got.audit_key.as_deref(), Some("k1"));
    assert_eq!(got.audit_payload, None, "outbox cleared once audited");
    let ids: Vec<String> = log
        .pending_audits(ms(3), 5, 100)
        .await
        .expect("p")
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert_eq!(ids, vec!["r02"]);
    assert_eq!(
        log.pending_audits(ms(100), 5, 2).await.expect("p").len(),
        2,
        "limit holds"
    );

    // Re-drives that fail: the row goes behind every row with fewer failures, and is set
    // aside at the limit.
    assert_eq!(
        log.note_redrive_failure(&["r02".into(), "r00".into()])
            .await
            .expect("note"),
        1,
        "audited rows are not counted"
    );
    let order: Vec<(String, u32)> = log
        .pending_audits(ms(100), 5, 100)
        .await
        .expect("p")
        .into_iter()
        .map(|p| (p.request_id, p.redrive_attempts))
        .collect();
    assert_eq!(order.first(), Some(&("r03".to_string(), 0)), "{order:?}");
    assert_eq!(order.last(), Some(&("r02".to_string(), 1)), "{order:?}");
    let ids: Vec<String> = log
        .pending_audits(ms(100), 1, 100)
        .await
        .expect("p")
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert!(!ids.contains(&"r02".to_string()), "set aside at the limit: {ids:?}");
    assert_eq!(log.count_set_aside(1).await.expect("count"), 1);
    assert_eq!(log.count_set_aside(2).await.expect("count"), 0);

    // Two requests under one client-chosen id in one commit: the second is a conflict.
    let first = record("dup", ms(150), 200, "GET", "/v1/echo");
    let second = record("dup", ms(151), 200, "GET", "/v1/echo");
    assert_eq!(
        log.insert_batch(&[first.clone(), second]).await.expect("dup"),
        vec![InsertOutcome::Inserted, InsertOutcome::IdConflict]
    );
    assert_eq!(
        log.get("dup").await.expect("get").expect("present").record,
        first.record
    );

    // Write-ahead: an intent is a row, not pending, until its record replaces it.
    let intent = |id: &str, at: OffsetDateTime| {
        let mut r = record(id, at, 0, "POST", "/v1/echo");
        r.record.error_code = Some(tollgate_core::apierror::OUTCOME_UNKNOWN.into());
        r.audit_payload = format!("{{\"request_id\":\"{id}\",\"outcome\":\"unknown\"}}");
        r.intent = true;
        r
    };
    let w1 = intent("w1", ms(200));
    assert_eq!(
        log.insert_batch(std::slice::from_ref(&w1)).await.expect("intent"),
        vec![InsertOutcome::Inserted]
    );
    assert!(matches!(
        log.insert_batch(std::slice::from_ref(&w1)).await.expect("intent again")[..],
        [InsertOutcome::Inserted | InsertOutcome::AlreadyPresent]
    ));
    let got = log.get("w1").await.expect("get").expect("intent row");
    assert!(got.intent);
    assert_eq!(got.record.status, 0);
    let pending: Vec<String> = log
        .pending_audits(ms(1000), 5, 100)
        .await
        .expect("p")
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert!(!pending.contains(&"w1".to_string()), "an intent is not re-driven");
    let mut clash = record("w1", ms(201), 200, "GET", "/other");
    clash.record.event_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        log.insert_batch(&[clash]).await.expect("clash"),
        vec![InsertOutcome::IdConflict]
    );
    assert!(
        log.get("w1").await.expect("get").expect("row").intent,
        "a clash leaves the intent"
    );
    let mut done = w1.clone();
    done.intent = false;
    done.record.status = 201;
    done.record.error_code = None;
    done.record.latency_ms = 9.5;
    done.audit_payload = "{\"request_id\":\"w1\",\"outcome\":\"201\"}".into();
    assert_eq!(
        log.insert_batch(std::slice::from_ref(&done)).await.expect("complete"),
        vec![InsertOutcome::Inserted]
    );
    let got = log.get("w1").await.expect("get").expect("row");
    assert!(!got.intent);
    assert_eq!(got.record, done.record, "the record replaced the intent");
    assert_eq!(got.audit_payload.as_deref(), Some(done.audit_payload.as_str()));
    assert!(matches!(
        log.insert_batch(std::slice::from_ref(&done))
            .await
            .expect("complete again")[..],
        [InsertOutcome::AlreadyPresent | InsertOutcome::Inserted]
    ));
    assert_eq!(log.get("w1").await.expect("get").expect("row").record, done.record);

    // An intent whose ingress died is finalized once it is old enough, and then goes out.
    let w2 = intent("w2", ms(300));
    log.insert_batch(std::slice::from_ref(&w2)).await.expect("intent");
    assert!(log.finalize_intents(ms(300), 100).await.expect("too young").is_empty());
    assert_eq!(
        log.finalize_intents(ms(301), 100).await.expect("finalize"),
        vec!["w2".to_string()]
    );
    assert!(log.finalize_intents(ms(301), 100).await.expect("once").is_empty());
    let got = log.get("w2").await.expect("get").expect("row");
    assert!(!got.intent);
    assert_eq!(
        got.record.error_code.as_deref(),
        Some(tollgate_core::apierror::OUTCOME_UNKNOWN)
    );
    let pending: Vec<String> = log
        .pending_audits(ms(1000), 5, 100)
        .await
        .expect("p")
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert!(pending.contains(&"w2".to_string()), "{pending:?}");
    // A late answer does not rewrite what was finalized.
    let mut late = w2.clone();
    late.intent = false;
    late.record.status = 200;
    log.insert_batch(&[late]).await.expect("late");
    assert_eq!(log.get("w2").await.expect("get").expect("row").record.status, 0);
}

/// The `ObjectStore` contract. `store` must be empty.
pub async fn object_store(store: &dyn ObjectStore) {
    let key = "audit/v1/2026/01/01/00/contract.ndjson.gz";
    assert_eq!(store.get(key).await.expect("get"), None);
    assert_eq!(
        store.put_if_absent(key, Bytes::from_static(b"one")).await.expect("put"),
        PutOutcome::Created
    );
    assert_eq!(
        store
            .put_if_absent(key, Bytes::from_static(b"two"))
            .await
            .expect("put again"),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        store.get(key).await.expect("get").as_deref(),
        Some(&b"one"[..]),
        "never overwritten"
    );
    store
        .put_if_absent("audit/v1/2026/01/01/01/b.ndjson.gz", Bytes::from_static(b"b"))
        .await
        .expect("put b");
    store
        .put_if_absent("other/x", Bytes::from_static(b"x"))
        .await
        .expect("put x");
    assert_eq!(
        store.list("audit/v1/").await.expect("list"),
        vec![key.to_string(), "audit/v1/2026/01/01/01/b.ndjson.gz".to_string()]
    );
    // Racing creators: exactly one wins.
    let racers = (0..8).map(|i| store.put_if_absent("race/k", Bytes::from(format!("{i}"))));
    let outcomes = futures_lite_join(racers).await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == PutOutcome::Created).count(),
        1,
        "{outcomes:?}"
    );
}

async fn futures_lite_join<'a, F>(futs: impl Iterator<Item = F>) -> Vec<PutOutcome>
where
    F: std::future::Future<Output = Result<PutOutcome, tollgate_core::ports::StoreError>> + Send + 'a,
{
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::new();
    // Polled together so the puts really overlap.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let results = std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out.len() <= i {
                out.push(None);
            }
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => out[i] = Some(r.expect("put")),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(out.iter().map(|o| o.expect("done")).collect::<Vec<_>>())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results
}

/// A minimal ALB target-group request for `path`, as the ingress sends it.
pub fn alb_event(path: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"requestContext":{{"elb":{{"targetGroupArn":"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1"}}}},"httpMethod":"GET","path":"{path}","multiValueQueryStringParameters":{{}},"multiValueHeaders":{{"host":["contract"]}},"isBase64Encoded":false,"body":""}}"#
    ))
}

/// The `Invoker` contract, over the shipped functions: `echo` answers an ALB event,
/// `audit-writer` reports a malformed batch as a function error with its type, an unknown
/// function is an error, and an asynchronous invoke is accepted.
pub async fn invoker(invoker: &dyn tollgate_core::ports::Invoker) {
    use tollgate_core::ports::InvokeError;
    let out = invoker
        .invoke("echo", alb_event("/v1/echo/contract"))
        .await
        .expect("invoke echo");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("ALB response JSON");
    assert_eq!(v["statusCode"], 200, "{v}");
    let body: serde_json::Value = serde_json::from_str(v["body"].as_str().expect("body")).expect("echo JSON");
    assert_eq!(body["path"], "/v1/echo/contract");

    let bad = Bytes::from_static(br#"{"batch_id":"not-a-uuid","events":[]}"#);
    match invoker.invoke("audit-writer", bad.clone()).await {
        Err(InvokeError::Function { error_type, .. }) => assert_eq!(error_type, "InvalidBatch"),
        other => panic!("expected a function error, got {other:?}"),
    }
    match invoker.invoke("no-such-function", Bytes::from_static(b"{}")).await {
        Err(InvokeError::UnknownFunction(_)) => {}
        other => panic!("expected an unknown function, got {other:?}"),
    }
    invoker
        .invoke_event("echo", alb_event("/v1/echo/async"))
        .await
        .expect("asynchronous invoke accepted");
    invoker.drain().await;
}

/// The `KeyStore` contract. `keys` must be empty.
pub async fn key_store(keys: &dyn tollgate_core::KeyStore) {
    use tollgate_core::access::ApiKeyRecord;
    assert_eq!(keys.count_keys().await.expect("count"), 0);
    assert!(keys.find_key("0000000000000000").await.expect("find").is_none());
    let at = tollgate_core::clock::parse_rfc3339("2026-11-25T22:10:04.123Z").expect("ts");
    let key = |id: &str, expires: Option<time::OffsetDateTime>| ApiKeyRecord {
        key_id: id.into(),
        name: format!("key {id}"),
        scopes: vec!["requests:read".into(), "requests:read:own".into()],
        secret_sha256: tollgate_core::access::secret_hash(id),
        created_at: at,
        expires_at: expires,
        revoked_at: None,
    };
    let a = key("00000000000000aa", None);
    let b = key("00000000000000bb", Some(at + time::Duration::days(90)));
    keys.create_key(&a).await.expect("create a");
    keys.create_key(&b).await.expect("create b");
    assert!(keys.create_key(&a).await.is_err(), "a key id is never reused");
    assert_eq!(keys.count_keys().await.expect("count"), 2);
    assert_eq!(keys.find_key(&a.key_id).await.expect("find"), Some(a.clone()));
    assert_eq!(keys.find_key(&b.key_id).await.expect("find"), Some(b.clone()));
    assert_eq!(keys.list_keys().await.expect("list"), vec![a.clone(), b.clone()]);
    let revoked_at = at + time::Duration::hours(1);
    assert!(keys.revoke_key(&a.key_id, revoked_at).await.expect("revoke"));
    assert!(
        !keys.revoke_key(&a.key_id, revoked_at).await.expect("revoke again"),
        "revoked once"
    );
    assert!(!keys
        .revoke_key("00000000000000cc", revoked_at)
        .await
        .expect("revoke unknown"));
    let found = keys.find_key(&a.key_id).await.expect("find").expect("still there");
    assert_eq!(found.revoked_at, Some(revoked_at));
    assert_eq!(found.unusable_at(revoked_at), Some("revoked_key"));
    assert_eq!(keys.count_keys().await.expect("count"), 2, "revoked keys still count");
}

/// The transparency log's sequencer and state (`RequestLog::mark_audited` + `TlogStore`):
/// several tasks marking different objects at once, and the same object twice, end with the
/// indexes handed out since the start each used once, every row marked now indexed in its
/// object's order with its leaf hash stored, and re-marks changing nothing; the integrated
/// state advances by compare-and-set only. May run after [`request_log`] on the same log.
pub async fn tlog_sequencer<L: RequestLog + TlogStore>(log: std::sync::Arc<L>) {
    const OBJECTS: usize = 8;
    const PER_OBJECT: usize = 40;
    let before = log.tlog_state().await.expect("state");
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6c";
    let id = |o: usize, i: usize| format!("seq-{o}-{i:03}");
    let rows: Vec<NewRecord> = (0..OBJECTS)
        .flat_map(|o| (0..PER_OBJECT).map(move |i| (o, i)))
        .map(|(o, i)| sample_record(&id(o, i), batch))
        .collect();
    log.insert_batch(&rows).await.expect("insert");
    // Object o holds its events in line order; the events' fake leaf hashes name the object.
    let object = |o: usize| -> Vec<AuditedEvent> { (0..PER_OBJECT).map(|i| audited(&id(o, i), o as u8)).collect() };
    let mut tasks = Vec::new();
    // Every object marked by two tasks at once (a writer and a re-drive that found the object).
    for round in 0..2 {
        for o in 0..OBJECTS {
            let (log, events) = (log.clone(), object(o));
            tasks.push(tokio::spawn(async move {
                let key = format!("audit/v1/seq-{o}.ndjson.gz");
                (round, log.mark_audited(&key, &events).await.expect("mark"))
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task").1;
    }
    let n = (OBJECTS * PER_OBJECT) as u64;
    assert_eq!(total, n, "each row marked once");
    let after = log.tlog_state().await.expect("state");
    assert_eq!(
        after.next_index,
        before.next_index + n,
        "the sequencer advanced by the rows marked"
    );
    let leaves = log
        .tlog_leaves(before.next_index, 100_000)
        .await
        .expect("leaves are contiguous");
    assert_eq!(leaves.len() as u64, n);
    let mut seen = std::collections::HashSet::new();
    for o in 0..OBJECTS {
        let mut first = None;
        for (i, e) in object(o).iter().enumerate() {
            let row = log.get(&e.request_id).await.expect("get").expect("row");
            let at = row.log_index.expect("every marked row is indexed");
            assert!(at >= before.next_index && at < after.next_index, "{at}");
            assert!(seen.insert(at), "index {at} used twice");
            // One object's events were sequenced together, in line order.
            let start = *first.get_or_insert(at);
            assert_eq!(at, start + i as u64, "object {o} is one run in line order");
            assert_eq!(row.leaf_hash.as_deref(), Some(e.leaf_hex().as_str()));
            assert_eq!(leaves[(at - before.next_index) as usize], e.leaf_hash);
            assert_eq!(row.audit_payload, None);
        }
    }
    // The digester's lookup: each object's rows with their indexes, only for the keys asked.
    let keys = vec![
        "audit/v1/seq-1.ndjson.gz".to_string(),
        "audit/v1/seq-5.ndjson.gz".to_string(),
        "audit/v1/no-such-object.ndjson.gz".to_string(),
    ];
    let mut found = log.tlog_object_rows(&keys).await.expect("object rows");
    found.sort();
    let mut expected = Vec::new();
    for o in [1, 5] {
        for e in object(o) {
            let row = log.get(&e.request_id).await.expect("get").expect("row");
            expected.push((
                format!("audit/v1/seq-{o}.ndjson.gz"),
                e.request_id.clone(),
                row.log_index,
            ));
        }
    }
    expected.sort();
    assert_eq!(found, expected);
    assert!(log.tlog_object_rows(&[]).await.expect("no keys").is_empty());
    // A re-drive never re-sequences.
    assert_eq!(log.mark_audited("again", &object(3)).await.expect("re-mark"), 0);
    assert_eq!(log.tlog_state().await.expect("state").next_index, after.next_index);
    assert!(log.tlog_leaves(after.next_index, 10).await.expect("none").is_empty());

    // An integration round's one read: the state and the leaves from its size on, together.
    let (state, pending) = log.tlog_pending(100_000).await.expect("pending");
    assert_eq!(state, after);
    assert_eq!(
        pending,
        log.tlog_leaves(after.size, 100_000).await.expect("leaves"),
        "the pending leaves are the leaves from the integrated size on"
    );
    assert_eq!(pending.len() as u64, after.next_index - after.size);
    let (_, first) = log.tlog_pending(5).await.expect("pending, limited");
    assert_eq!(first, pending[..5], "at most the limit, from the integrated size");

    // The integrated state: compare-and-set from the size it holds.
    assert_eq!(after.size, before.size);
    let root = [7u8; 32];
    assert!(log
        .tlog_advance(before.size, before.size + 3, &root, "checkpoint 3\n")
        .await
        .expect("advance"));
    assert!(
        !log.tlog_advance(before.size, before.size + 5, &[8; 32], "other\n")
            .await
            .expect("stale advance"),
        "an integrator that lost the race does not overwrite"
    );
    let state = log.tlog_state().await.expect("state");
    assert_eq!(state.size, before.size + 3);
    assert_eq!(state.root_hash, Some(root));
    assert_eq!(state.checkpoint.as_deref(), Some("checkpoint 3\n"));
    let (pending_state, pending_after) = log.tlog_pending(100_000).await.expect("pending");
    assert_eq!(pending_state, state);
    assert_eq!(pending_after, pending[3..], "the pending leaves start at the new size");
}

/// `TlogStore::tlog_rows`, the verifier's stream of the sequenced rows: every row marked now
/// comes back once, in index order, with its audit key and leaf hash; paging by `limit` and
/// resuming after the last index gives the same rows; nothing past the sequencer. May run
/// after [`tlog_sequencer`] on the same log.
pub async fn tlog_rows<L: RequestLog + TlogStore>(log: &L) {
    let before = log.tlog_state().await.expect("state");
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6d";
    let id = |o: usize, i: usize| format!("rows-{o}-{i:03}");
    let counts = [17usize, 8];
    let rows: Vec<NewRecord> = counts
        .iter()
        .enumerate()
        .flat_map(|(o, &n)| (0..n).map(move |i| (o, i)))
        .map(|(o, i)| sample_record(&id(o, i), batch))
        .collect();
    log.insert_batch(&rows).await.expect("insert");
    let key = |o: usize| format!("audit/v1/rows-{o}.ndjson.gz");
    for (o, &n) in counts.iter().enumerate() {
        let events: Vec<AuditedEvent> = (0..n).map(|i| audited(&id(o, i), 0x40 + o as u8)).collect();
        assert_eq!(log.mark_audited(&key(o), &events).await.expect("mark"), n as u64);
    }
    let after = log.tlog_state().await.expect("state");
    let total: usize = counts.iter().sum();
    assert_eq!(after.next_index, before.next_index + total as u64);
    let all = log.tlog_rows(before.next_index, 10_000).await.expect("rows");
    assert_eq!(all.len(), total, "every row marked now, once");
    for (k, row) in all.iter().enumerate() {
        assert_eq!(row.log_index, before.next_index + k as u64, "in index order, no holes");
        let (o, i) = if k < counts[0] { (0, k) } else { (1, k - counts[0]) };
        assert_eq!(row.request_id, id(o, i), "line order within an object");
        assert_eq!(row.audit_key.as_deref(), Some(key(o).as_str()));
        assert_eq!(
            row.leaf_hash.as_deref(),
            Some(audited(&id(o, i), 0x40 + o as u8).leaf_hex().as_str())
        );
    }
    // Paging: small pages, each resuming after the last index, give the same rows.
    let mut paged = Vec::new();
    let mut from = before.next_index;
    loop {
        let page = log.tlog_rows(from, 7).await.expect("page");
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        from = last.log_index + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(log.tlog_rows(after.next_index, 10).await.expect("none").is_empty());
    assert!(log.tlog_rows(before.next_index, 0).await.expect("limit 0").is_empty());
}

/// `RequestLog::mark_audited_pending`, the marking that answers the integration's read: it
/// marks and sequences as `mark_audited` does, and its answer is the log's state after the
/// marking with every leaf from the integrated size up to the sequencer's next index (at most
/// the limit; contiguous), read while the marking held the sequencer, so that concurrent
/// markers' answers each hold all the leaves below their own next index. May run after
/// [`tlog_sequencer`] and [`tlog_rows`] on the same log.
pub async fn tlog_mark_pending<L: RequestLog + TlogStore>(log: std::sync::Arc<L>) {
    let before = log.tlog_state().await.expect("state");
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6e";
    let id = |o: usize, i: usize| format!("mp-{o}-{i:03}");
    // Object 0 spans more than one row of the PostgreSQL answer (256 leaves a row).
    let counts = [300usize, 5, 20];
    let rows: Vec<NewRecord> = counts
        .iter()
        .enumerate()
        .flat_map(|(o, &n)| (0..n).map(move |i| (o, i)))
        .map(|(o, i)| sample_record(&id(o, i), batch))
        .collect();
    log.insert_batch(&rows).await.expect("insert");
    let object =
        |o: usize| -> Vec<AuditedEvent> { (0..counts[o]).map(|i| audited(&id(o, i), 0x60 + o as u8)).collect() };
    let key = |o: usize| format!("audit/v1/mp-{o}.ndjson.gz");

    let first = log
        .mark_audited_pending(&key(0), &object(0), 100_000)
        .await
        .expect("mark");
    assert_eq!(first.marked, counts[0] as u64);
    let (state, leaves) = first
        .pending
        .expect("this adapter answers the pending read with the marking");
    assert_eq!(
        state,
        log.tlog_state().await.expect("state"),
        "the state after the marking"
    );
    assert_eq!(state.next_index, before.next_index + counts[0] as u64);
    assert_eq!(leaves.len() as u64, state.next_index - state.size, "every pending leaf");
    assert_eq!(leaves, log.tlog_leaves(state.size, 100_000).await.expect("leaves"));
    for (i, e) in object(0).iter().enumerate() {
        let row = log.get(&e.request_id).await.expect("get").expect("row");
        assert_eq!(
            row.log_index,
            Some(before.next_index + i as u64),
            "sequenced in line order"
        );
        assert_eq!(row.leaf_hash.as_deref(), Some(e.leaf_hex().as_str()));
    }

    // Objects 1 and 2, each marked by two tasks at once: each row marked once, and each answer
    // holds every leaf below its own next index (no marker's leaves missing from another's).
    let mut tasks = Vec::new();
    for _ in 0..2 {
        for o in [1, 2] {
            let (log, events, key) = (log.clone(), object(o), key(o));
            tasks.push(tokio::spawn(async move {
                log.mark_audited_pending(&key, &events, 100_000).await.expect("mark")
            }));
        }
    }
    let mut marked = 0;
    let mut answers = Vec::new();
    for t in tasks {
        let m = t.await.expect("task");
        marked += m.marked;
        answers.push(m.pending.expect("pending"));
    }
    assert_eq!(marked, (counts[1] + counts[2]) as u64, "each row marked once");
    let after = log.tlog_state().await.expect("state");
    assert_eq!(after.next_index, state.next_index + marked);
    let all = log.tlog_leaves(after.size, 100_000).await.expect("leaves");
    for (s, l) in &answers {
        assert_eq!(s.size, after.size);
        assert!(s.next_index > state.next_index && s.next_index <= after.next_index);
        assert_eq!(l.len() as u64, s.next_index - s.size, "all leaves below its next index");
        assert_eq!(l[..], all[..l.len()]);
    }

    // A re-drive marks nothing and still answers; a limit bounds the leaves, from the size on.
    let again = log.mark_audited_pending(&key(2), &object(2), 7).await.expect("re-mark");
    assert_eq!(again.marked, 0);
    let (s, l) = again.pending.expect("pending");
    assert_eq!(s, after);
    assert_eq!(l[..], all[..7]);

    // After a compare-and-set, the answer starts at the new size, with its root and checkpoint.
    let root = [9u8; 32];
    assert!(log
        .tlog_advance(after.size, after.size + 10, &root, "checkpoint mp\n")
        .await
        .expect("advance"));
    let (s, l) = log
        .mark_audited_pending(&key(1), &object(1), 100_000)
        .await
        .expect("re-mark")
        .pending
        .expect("pending");
    assert_eq!(
        (s.size, s.root_hash, s.checkpoint.as_deref()),
        (after.size + 10, Some(root), Some("checkpoint mp\n"))
    );
    assert_eq!(s.next_index, after.next_index);
    assert_eq!(l[..], all[10..]);
}
