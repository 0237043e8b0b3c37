//! compose.yaml describes the same cluster as scripts/cluster.sh with the
//! official images. Docker does not run here, so this checks what can be
//! checked without it: the file parses, every service, dependency, volume,
//! host name and port it names exists and agrees, every file it mounts or
//! builds from is in the repo, and each im-server command parses with the
//! server's own flags and has what its role needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use im_server::{Config, Role};
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn key(s: &str) -> Yaml {
    Yaml::String(s.to_owned())
}

/// A mapping with YAML merge keys (`<<: *anchor`) applied: the file's own
/// keys win over merged ones.
fn merged(node: &Yaml) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    let Some(hash) = node.as_hash() else {
        return out;
    };
    if let Some(base) = hash.get(&key("<<")) {
        out.extend(merged(base));
    }
    for (k, v) in hash {
        if let Some(k) = k.as_str().filter(|k| *k != "<<") {
            out.insert(k.to_owned(), v.clone());
        }
    }
    out
}

fn strings(node: &Yaml) -> Vec<String> {
    node.as_vec()
        .map(|v| v.iter().filter_map(scalar).collect())
        .unwrap_or_default()
}

fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `scheme://user:pass@HOST:port/...` or `HOST:port` → HOST.
fn host_of(addr: &str) -> String {
    let rest = addr.split("://").last().unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    rest.split(['/', ':']).next().unwrap().to_owned()
}

fn port_of(addr: &str) -> u16 {
    let rest = addr.split("://").last().unwrap().split('/').next().unwrap();
    rest.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn compose_names_only_what_exists() {
    let text = std::fs::read_to_string(repo().join("compose.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("compose.yaml is valid YAML");
    let doc = &docs[0];
    let services = merged(&doc["services"]);
    let volumes: BTreeSet<String> = merged(&doc["volumes"]).into_keys().collect();
    let expected = [
        "mysql",
        "redis",
        "kafka",
        "transfer1",
        "transfer2",
        "connector1",
        "connector2",
        "rest-api",
        "offline-worker",
        "nginx",
    ];
    for name in expected {
        assert!(services.contains_key(name), "service {name} missing");
    }

    let mut roles = BTreeMap::new();
    let mut connector_ports = BTreeSet::new();
    for (name, service) in &services {
        let service = merged(service);
        assert!(
            service.contains_key("image") || service.contains_key("build"),
            "{name} has neither image nor build"
        );
        // Dependencies name services.
        let deps = &service.get("depends_on").cloned().unwrap_or(Yaml::BadValue);
        let deps: Vec<String> = match deps {
            Yaml::Array(_) => strings(deps),
            Yaml::Hash(_) => merged(deps).into_keys().collect(),
            _ => Vec::new(),
        };
        for dep in deps {
            assert!(
                services.contains_key(&dep),
                "{name} depends on unknown {dep}"
            );
            assert_ne!(&dep, name, "{name} depends on itself");
        }
        // Published ports are HOST:CONTAINER numbers.
        for mapping in strings(service.get("ports").unwrap_or(&Yaml::BadValue)) {
            let (host, container) = mapping.split_once(':').expect("HOST:CONTAINER");
            host.parse::<u16>()
                .unwrap_or_else(|_| panic!("{name}: bad port {mapping}"));
            container
                .parse::<u16>()
                .unwrap_or_else(|_| panic!("{name}: bad port {mapping}"));
        }
        // Volumes are declared named volumes or files of the repo.
        for volume in strings(service.get("volumes").unwrap_or(&Yaml::BadValue)) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    repo().join(source).exists(),
                    "{name} mounts missing {source}"
                );
            } else {
                assert!(
                    volumes.contains(source),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
        if let Some(build) = service.get("build") {
            let build = merged(build);
            let context = repo().join(scalar(&build["context"]).unwrap());
            let dockerfile = scalar(&build["dockerfile"]).unwrap();
            assert!(
                context.join(&dockerfile).is_file(),
                "{name}: no {dockerfile}"
            );
        }
        // Host names in the environment are services.
        let env = merged(service.get("environment").unwrap_or(&Yaml::BadValue));
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter_map(|(k, v)| scalar(&v).map(|v| (k, v)))
            .collect();
        for var in ["IM_DATABASE_URL", "IM_REDIS_URL", "IM_KAFKA_BROKERS"] {
            if let Some(url) = env.get(var) {
                let host = host_of(url);
                assert!(
                    services.contains_key(&host),
                    "{name}: {var} names unknown {host}"
                );
            }
        }
        if let Some(list) = env.get("IM_TRANSFERS") {
            for t in list.split(',') {
                assert!(
                    services.contains_key(&host_of(t)),
                    "{name}: unknown transfer {t}"
                );
            }
        }
        // im-server commands parse with the server's flags and have what
        // their role needs.
        if service.contains_key("build") {
            let command = strings(&service["command"]);
            let mut args = vec!["im-server".to_owned()];
            args.extend(command.iter().cloned());
            let mut config = Config::try_parse_from(&args)
                .unwrap_or_else(|e| panic!("{name}: command does not parse: {e}"));
            config.database_url = env.get("IM_DATABASE_URL").cloned();
            config.redis_url = env.get("IM_REDIS_URL").cloned();
            config.kafka_brokers = env.get("IM_KAFKA_BROKERS").cloned();
            if let Some(list) = env.get("IM_TRANSFERS") {
                config.transfers = list.split(',').map(str::to_owned).collect();
                for t in &config.transfers {
                    let transfer = merged(&services[&host_of(t)]);
                    let args = strings(&transfer["command"]);
                    let listen = args
                        .iter()
                        .skip_while(|a| *a != "--transfer-addr")
                        .nth(1)
                        .unwrap();
                    assert_eq!(
                        port_of(listen),
                        port_of(t),
                        "{name}: {t} is not where it listens"
                    );
                }
            }
            config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            if config.role == Role::Connector {
                connector_ports.insert((name.clone(), config.link_addr.port()));
                connector_ports.insert((name.clone(), config.ws_addr.port()));
            }
            roles.insert(name.clone(), config.role);
        }
    }
    for role in [
        Role::Transfer,
        Role::Connector,
        Role::RestApi,
        Role::OfflineWorker,
    ] {
        assert!(
            roles.values().any(|r| *r == role),
            "no service runs {role:?}"
        );
    }
    assert_eq!(roles.values().filter(|r| **r == Role::Transfer).count(), 2);
    assert_eq!(roles.values().filter(|r| **r == Role::Connector).count(), 2);

    // nginx balances over the connectors' real link ports.
    let nginx = std::fs::read_to_string(repo().join("deploy/nginx-compose.conf")).unwrap();
    let upstreams: BTreeSet<(String, u16)> = nginx
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("server "))
        .filter(|l| !l.starts_with('{'))
        .map(|l| {
            let addr = l.split_whitespace().next().unwrap();
            (host_of(addr), port_of(addr))
        })
        .collect();
    assert_eq!(
        upstreams, connector_ports,
        "nginx upstreams are the connectors' ports"
    );
}
