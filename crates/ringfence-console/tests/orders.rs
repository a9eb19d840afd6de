//! Response orders against real SQLite and real PostgreSQL: an operator orders an action for
//! one agent, its next check-in delivers it exactly once, a later check-in's result settles
//! it, and the audit log has both.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Backend, console};
use ringfence_wire::{AgentId, OrderAction, ResponseOrder, SignedOrder};
use serde_json::json;

/// What the agent `id` would run of a signed order: verified with the console's order key at
/// the time it was issued, as if nothing had been taken before.
fn open(c: &common::TestConsole, id: &str, o: &SignedOrder) -> ResponseOrder {
    let body: serde_json::Value = serde_json::from_str(&o.body).unwrap();
    let issued_at = body["issued_at"].as_u64().unwrap();
    let agent = AgentId::try_from(id.to_owned()).unwrap();
    o.verify(Some(&c.state.order_key.pin()), &agent, issued_at, 0)
        .unwrap()
}

both!(
    orders_are_delivered_once_and_settled_by_results,
    orders_need_an_operator
);

async fn orders_are_delivered_once_and_settled_by_results(b: Backend) {
    let c = console(b).await;
    let mut agents = c.enroll(2, |_| json!({})).await;
    let (first, second) = agents.split_at_mut(1);
    let (a, other) = (&mut first[0], &mut second[0]);

    // An agent without orders gets none (and the field is absent on the wire).
    let (status, resp) = c.checkin(a, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(resp.unwrap().orders.is_empty());

    let order =
        json!({"action": {"kind": "kill", "pid": 4242, "tree": true}, "reason": "IR-17: miner"});
    let uri = format!("/api/v1/agents/{}/orders", a.id);
    let (status, v) = c.op("POST", &uri, order.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "pending");
    assert_eq!(v["requested_by"], "admin");
    assert_eq!(v["action"]["kind"], "kill");
    let id = v["id"].as_i64().unwrap();

    // Unknown (well-formed or not) agent: 404.
    let unknown = "/api/v1/agents/0123456789abcdef0123456789abcdef/orders";
    let (status, v) = c.op("POST", unknown, order.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, _) = c
        .op("POST", "/api/v1/agents/nope/orders", order.clone())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad actions: 400 naming the field.
    for (action, needle) in [
        (json!({"kind": "kill", "pid": 0}), "pid"),
        (
            json!({"kind": "block_ip", "ip": "10.0.0.1", "ttl_secs": 0}),
            "ttl_secs",
        ),
        (json!({"kind": "quarantine", "path": "relative/x"}), "path"),
        (json!({"kind": "format_disk"}), "unknown variant"),
    ] {
        let (status, v) = c
            .op("POST", &uri, json!({"action": action, "reason": "x"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{action}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.starts_with("action: ") && msg.contains(needle), "{msg}");
    }
    let (status, v) = c
        .op(
            "POST",
            &uri,
            json!({"action": {"kind": "kill", "pid": 5}, "reason": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(c.count("response_orders").await, 1);

    // The other agent's check-in carries nothing; this agent's carries the order once.
    let (_, resp) = c.checkin(other, json!({})).await;
    assert!(resp.unwrap().orders.is_empty());
    let (status, resp) = c.checkin(a, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let signed: Vec<_> = resp.unwrap().orders.iter().cloned().collect();
    assert_eq!(signed.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&signed[0].body).unwrap();
    assert_eq!(body["agent_id"], a.id.as_str(), "bound to the agent");
    assert_eq!(
        body["not_after"].as_u64().unwrap() - body["issued_at"].as_u64().unwrap(),
        ringfence_console::orders::ORDER_TTL_SECS
    );
    // The kill below names no start time, so the agent would refuse it; the console signs it
    // all the same (the agent is the one that decides).
    let agent_id = AgentId::try_from(a.id.clone()).unwrap();
    let issued_at = body["issued_at"].as_u64().unwrap();
    assert_eq!(
        signed[0]
            .verify(Some(&c.state.order_key.pin()), &agent_id, issued_at, 0)
            .unwrap_err()
            .1,
        ringfence_wire::OrderRefusal::KillWithoutStartTime
    );
    let orders = [ResponseOrder {
        id: body["id"].as_u64().unwrap(),
        action: serde_json::from_value(body["action"].clone()).unwrap(),
        requested_by: serde_json::from_value(body["requested_by"].clone()).unwrap(),
        reason: body["reason"].as_str().unwrap().to_owned(),
    }];
    assert_eq!(orders[0].id, id.unsigned_abs());
    assert_eq!(
        orders[0].action,
        OrderAction::Kill {
            pid: 4242,
            tree: true,
            start_ticks: None
        }
    );
    assert_eq!(orders[0].requested_by.as_str(), "admin");
    assert_eq!(orders[0].reason, "IR-17: miner");
    let (_, v) = c
        .op(
            "GET",
            &format!("/api/v1/orders?agent={}", a.id),
            json!(null),
        )
        .await;
    assert_eq!(v[0]["state"], "delivered", "{v}");

    // Not delivered again.
    let (_, resp) = c.checkin(a, json!({})).await;
    assert!(resp.unwrap().orders.is_empty());

    // A result from another agent changes nothing; the agent's own result settles it, and
    // the same result sent again (a lost acknowledgement) is harmless.
    let result =
        json!({"order_results": [{"id": id, "status": "dry-run", "detail": "dry run: allowed"}]});
    let (status, _) = c.checkin_with(other, json!({}), result.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, v) = c.op("GET", "/api/v1/orders", json!(null)).await;
    assert_eq!(v[0]["state"], "delivered", "{v}");
    for _ in 0..2 {
        let (status, _) = c.checkin_with(a, json!({}), result.clone()).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, v) = c
        .op(
            "GET",
            &format!("/api/v1/orders?agent={}", a.id),
            json!(null),
        )
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["state"], "dry-run", "{v}");
    assert_eq!(v[0]["detail"], "dry run: allowed");
    let (_, v) = c
        .op(
            "GET",
            &format!("/api/v1/orders?agent={}", other.id),
            json!(null),
        )
        .await;
    assert!(v.as_array().unwrap().is_empty(), "{v}");

    // Audit: the order and its result, once each.
    let (_, audit) = c.op("GET", "/api/v1/audit", json!(null)).await;
    let entries: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "response-order")
        .collect();
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(entries[1]["actor"], "admin");
    assert_eq!(entries[1]["decision"], "ordered");
    assert!(entries[1]["evidence"].as_str().unwrap().contains("IR-17"));
    assert_eq!(entries[0]["actor"], format!("agent:{}", a.id));
    assert_eq!(entries[0]["decision"], "dry-run");

    // Several orders, newest first in the listing, delivered oldest first; a console that
    // starts afresh (or another console) finds pending orders from the database.
    for pid in [100, 101] {
        let (status, v) = c
            .op(
                "POST",
                &uri,
                json!({"action": {"kind": "kill", "pid": pid, "start_ticks": 1}, "reason": "r"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (_, v) = c.op("GET", "/api/v1/orders?limit=2", json!(null)).await;
    assert_eq!(v[0]["action"]["pid"], 101, "{v}");
    let fresh = ringfence_console::orders::PendingOrders::default();
    fresh.reload(&c.state.db).await.unwrap();
    assert!(fresh.get(&a.id).is_some());
    assert!(fresh.get(&other.id).is_none());
    let (_, resp) = c.checkin(a, json!({})).await;
    let pids: Vec<_> = resp
        .unwrap()
        .orders
        .iter()
        .map(|o| open(&c, &a.id, o))
        .map(|o| match o.action {
            OrderAction::Kill { pid, .. } => pid,
            _ => 0,
        })
        .collect();
    assert_eq!(pids, [100, 101]);
}

async fn orders_need_an_operator(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(1, |_| json!({})).await;
    let uri = format!("/api/v1/agents/{}/orders", agents[0].id);
    let body =
        serde_json::to_vec(&json!({"action": {"kind": "kill", "pid": 5}, "reason": "r"})).unwrap();
    let (status, _) = c.call("POST", &uri, None, Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An agent's credential is not an operator's.
    let cred = agents[0].credential.as_str().to_owned();
    let (status, _) = c.call("POST", &uri, Some(&cred), Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c.call("GET", "/api/v1/orders", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.count("response_orders").await, 0);
}
