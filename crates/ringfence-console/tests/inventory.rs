//! Host inventories on a real console, on real SQLite and real PostgreSQL: whole uploads, then
//! deltas; the package question an operator asks ("which hosts run openssh-server below the
//! fixed version"); and agents that lie: about whose inventory it is, about its digest, about
//! the base of a delta, and by sending too much.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use axum::http::StatusCode;
use common::{Agent, Backend, TestConsole, console};
use ringfence_wire::inventory::{
    Inventory, InventoryBody, InventoryDelta, InventoryUpload, Package,
};
use serde_json::{Value, json};

both!(
    whole_then_deltas_answer_which_hosts_run_a_package_below_a_version,
    lies_about_owner_digest_or_base_are_refused_and_nothing_changes,
    an_agent_sending_too_much_is_held_off_by_its_quota,
);

fn inventory(packages: &[(&str, &str)]) -> Inventory {
    let mut inv = Inventory {
        packages: packages
            .iter()
            .map(|(n, v)| Package {
                name: (*n).into(),
                version: (*v).into(),
                architecture: "amd64".into(),
            })
            .collect(),
        users: Vec::new(),
        kernel_modules: vec!["ext4".into()],
        ..Inventory::default()
    };
    inv.canonicalize();
    inv
}

fn whole(agent: &Agent, inv: &Inventory) -> InventoryUpload {
    InventoryUpload {
        protocol: 1,
        agent_id: agent.id.clone().try_into().unwrap(),
        sha256: inv.sha256(),
        body: InventoryBody::Full {
            inventory: inv.clone(),
        },
    }
}

fn delta(agent: &Agent, from: &Inventory, to: &Inventory) -> InventoryUpload {
    InventoryUpload {
        protocol: 1,
        agent_id: agent.id.clone().try_into().unwrap(),
        sha256: to.sha256(),
        body: InventoryBody::Delta {
            base_sha256: from.sha256(),
            delta: InventoryDelta::between(from, to),
        },
    }
}

async fn send(c: &TestConsole, agent: &Agent, upload: &InventoryUpload) -> (StatusCode, Value) {
    c.call(
        "POST",
        "/api/v1/agents/inventory",
        Some(agent.credential.as_str()),
        Some(serde_json::to_vec(upload).unwrap()),
    )
    .await
}

async fn hosts(c: &TestConsole, query: &str) -> Vec<String> {
    let (status, v) = c
        .op(
            "GET",
            &format!("/api/v1/inventory/packages?{query}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["agent_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn whole_then_deltas_answer_which_hosts_run_a_package_below_a_version(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(3, |_| json!({})).await;
    let old = inventory(&[("openssh-server", "1:9.2p1-2"), ("curl", "7.88.1-10")]);
    let fixed = inventory(&[
        ("openssh-server", "1:9.2p1-2+deb12u3"),
        ("curl", "7.88.1-10"),
    ]);
    let none = inventory(&[("curl", "7.88.1-10")]);
    for (agent, inv) in agents.iter().zip([&old, &fixed, &none]) {
        let (status, v) = send(&c, agent, &whole(agent, inv)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["sha256"], inv.sha256());
    }
    let below = "name=openssh-server&below=1:9.2p1-2%2Bdeb12u3";
    assert_eq!(hosts(&c, below).await, vec![agents[0].id.clone()]);
    let mut all = hosts(&c, "name=openssh-server").await;
    all.sort();
    let mut expected = vec![agents[0].id.clone(), agents[1].id.clone()];
    expected.sort();
    assert_eq!(all, expected);
    assert_eq!(
        hosts(&c, "name=openssh-server&at_least=1:9.2p1-2%2Bdeb12u3").await,
        vec![agents[1].id.clone()]
    );

    // The vulnerable host upgrades: a delta of two lines, and it leaves the answer.
    let upgrade = delta(&agents[0], &old, &fixed);
    assert!(serde_json::to_vec(&upgrade).unwrap().len() < 600);
    let (status, v) = send(&c, &agents[0], &upgrade).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(hosts(&c, below).await.is_empty());

    // The whole inventory of a host, for its page and the CLI.
    let (status, v) = c
        .op(
            "GET",
            &format!("/api/v1/agents/{}/inventory", agents[0].id),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sha256"], fixed.sha256());
    assert_eq!(v["inventory"]["packages"].as_array().unwrap().len(), 2);

    // The host's page shows it, and what an agent sent is text, never markup.
    let hostile = inventory(&[("<script>alert(1)</script>", "1"), ("curl", "7.88.1-10")]);
    let (status, _) = send(&c, &agents[2], &whole(&agents[2], &hostile)).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = c.session().await;
    let html = c.page(&cookie, &format!("/agents/{}", agents[2].id)).await;
    assert!(
        html.contains("<h2>Inventory</h2>") && html.contains("2 packages"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)"), "{html}");
    let html = c.page(&cookie, &format!("/agents/{}", agents[1].id)).await;
    assert!(html.contains("openssh-server 1:9.2p1-2+deb12u3"), "{html}");

    // A version that is not Debian's is the operator's mistake, named.
    let (status, v) = c
        .op(
            "GET",
            "/api/v1/inventory/packages?name=curl&below=1.0%20beta",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("below"), "{v}");
    // Reading needs an operator.
    let (status, _) = c
        .call("GET", "/api/v1/inventory/packages?name=curl", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn lies_about_owner_digest_or_base_are_refused_and_nothing_changes(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(2, |_| json!({})).await;
    let mine = inventory(&[("openssh-server", "1:9.2p1-2")]);
    let (status, _) = send(&c, &agents[0], &whole(&agents[0], &mine)).await;
    assert_eq!(status, StatusCode::OK);

    // Agent 1 writes agent 0's inventory with its own credential.
    let forged = whole(&agents[0], &inventory(&[("openssh-server", "1:99")]));
    let (status, v) = send(&c, &agents[1], &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // A whole inventory whose digest is not its own.
    let mut lie = whole(&agents[0], &inventory(&[("openssh-server", "1:99")]));
    lie.sha256 = mine.sha256();
    let (status, v) = send(&c, &agents[0], &lie).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // A delta from a base the console does not hold, and one whose result is not announced.
    let elsewhere = inventory(&[("nginx", "1")]);
    let (status, v) = send(&c, &agents[0], &delta(&agents[0], &elsewhere, &mine)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let mut wrong_result = delta(&agents[0], &mine, &inventory(&[("openssh-server", "1:99")]));
    wrong_result.sha256 = elsewhere.sha256();
    let (status, v) = send(&c, &agents[0], &wrong_result).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    // A delta from an agent the console holds nothing for.
    let (status, v) = send(&c, &agents[1], &delta(&agents[1], &mine, &elsewhere)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");

    // Nothing of it landed.
    assert_eq!(
        hosts(&c, "name=openssh-server").await,
        vec![agents[0].id.clone()]
    );
    let (_, v) = c
        .op(
            "GET",
            &format!("/api/v1/agents/{}/inventory", agents[0].id),
            Value::Null,
        )
        .await;
    assert_eq!(v["sha256"], mine.sha256());
    assert_eq!(c.count("host_inventory").await, 1);
}

async fn an_agent_sending_too_much_is_held_off_by_its_quota(b: Backend) {
    let c = console(b).await;
    let agents = c.enroll(1, |_| json!({})).await;
    let mut big = Inventory {
        kernel_modules: (0..60_000).map(|i| format!("{i:0>100}")).collect(),
        ..Inventory::default()
    };
    big.canonicalize();
    let upload = whole(&agents[0], &big);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(&c, &agents[0], &upload).await.0);
    }
    assert_eq!(statuses[0], StatusCode::OK);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}
