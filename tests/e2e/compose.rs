//! docker-compose.yml describes the clustered shape; no Docker engine runs here, so this
//! checks that it parses and has what the shape needs.

use yaml_rust2::{Yaml, YamlLoader};

#[test]
fn docker_compose_parses_and_describes_the_cluster_with_health_checks() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is valid YAML");
    let services = &docs[0]["services"];
    let names: Vec<&str> = services
        .as_hash()
        .expect("services")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    for needed in ["postgres", "nats"] {
        assert!(names.contains(&needed), "{needed} service: {names:?}");
    }
    let chorus: Vec<&&str> = names.iter().filter(|n| n.starts_with("chorus")).collect();
    assert!(chorus.len() >= 2, "at least two chorus nodes: {names:?}");
    for name in &names {
        let service = &services[*name];
        // Merged services (`<<: *chorus`) inherit the health check.
        let own = !service["healthcheck"].is_badvalue();
        let merged = !service["<<"]["healthcheck"].is_badvalue();
        assert!(own || merged, "{name} has a health check");
    }
    let node = &services["chorus-1"];
    let env = &node["environment"];
    assert!(env["CHORUS_DATABASE_URL"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    assert!(env["CHORUS_NATS_URL"]
        .as_str()
        .unwrap()
        .starts_with("nats://"));
    for dep in ["postgres", "nats"] {
        assert_eq!(
            node["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy")
        );
    }
}
