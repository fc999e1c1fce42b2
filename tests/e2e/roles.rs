//! Reordering roles dispatches GUILD_ROLE_UPDATE for each moved role, as Discord does, so
//! libraries' role caches follow the new positions.

use serde_json::json;

use crate::harness::{Gateway, Server, Shape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_roles_dispatches_an_update_per_moved_role() {
    let server = Server::start(&Shape::Embedded);
    let (owner, _) = server.api(None).register("owner").await;
    let g = owner
        .ok("POST", "/guilds", Some(json!({ "name": "Roles" })))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let role = owner
            .ok(
                "POST",
                &format!("/guilds/{g}/roles"),
                Some(json!({ "name": name })),
            )
            .await;
        ids.push(role["id"].as_str().unwrap().to_owned());
    }
    let mut gw = Gateway::connect(&server.ws, owner.token.as_deref().unwrap()).await;
    let positions = owner
        .ok(
            "PATCH",
            &format!("/guilds/{g}/roles"),
            Some(json!([{ "id": ids[0], "position": 1 }, { "id": ids[1], "position": 2 }])),
        )
        .await;
    let listed: Vec<(String, u64)> = positions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(listed.contains(&(ids[0].clone(), 1)), "{listed:?}");
    assert!(listed.contains(&(ids[1].clone(), 2)), "{listed:?}");
    let mut updated = Vec::new();
    while updated.len() < 2 {
        let d = gw.wait_for("GUILD_ROLE_UPDATE").await;
        assert_eq!(d["guild_id"], g.as_str());
        updated.push((
            d["role"]["id"].as_str().unwrap().to_owned(),
            d["role"]["position"].as_u64().unwrap(),
        ));
    }
    updated.sort();
    let mut expected = vec![(ids[0].clone(), 1), (ids[1].clone(), 2)];
    expected.sort();
    assert_eq!(updated, expected);
}
