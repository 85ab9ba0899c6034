//! Tests of target files and transport URIs.
use super::*;

fn parse(yaml: &str) -> Result<Target, TargetError> {
    Target::from_yaml_str(yaml, Path::new("targets/t.yaml"))
}

#[test]
fn transports_parse() {
    assert_eq!(TransportSpec::parse("local"), Ok(TransportSpec::Local));
    assert_eq!(
        TransportSpec::parse("ssh://pi@rpi.local:2222"),
        Ok(TransportSpec::Ssh {
            user: Some("pi".into()),
            host: "rpi.local".into(),
            port: Some(2222)
        })
    );
    assert_eq!(
        TransportSpec::parse("ssh://pi@[fe80::1]:2222"),
        Ok(TransportSpec::Ssh {
            user: Some("pi".into()),
            host: "fe80::1".into(),
            port: Some(2222)
        })
    );
    assert_eq!(
        TransportSpec::parse("ssh://[::1]"),
        Ok(TransportSpec::Ssh {
            user: None,
            host: "::1".into(),
            port: None
        })
    );
    assert_eq!(
        TransportSpec::parse("adb://"),
        Ok(TransportSpec::Adb { serial: None })
    );
    assert_eq!(
        TransportSpec::parse("serial:///dev/ttyUSB0?baud=921600"),
        Ok(TransportSpec::Serial {
            path: "/dev/ttyUSB0".into(),
            baud: 921_600
        })
    );
    assert!(TransportSpec::parse("tcp://host").is_err());
    assert!(TransportSpec::parse("serial://dev/tty?baud=x").is_err());
    assert!(TransportSpec::parse("serial:///dev/tty?parity=odd").is_err());
    assert!(TransportSpec::parse("ftp://x").is_err());
    for s in [
        "local",
        "qemu",
        "ssh://a@b",
        "ssh://a@b:2",
        "ssh://b",
        "ssh://pi@[fe80::1]:2222",
        "ssh://pi@[fe80::1%eth0]",
        "adb://emulator-5554",
        "adb://X1",
        "tcp://h:1",
        "serial:///dev/x?baud=9600",
        "qemu-system://mps2-an386",
        "probe-rs://STM32F746NGHx",
        "probe-rs://nRF52840_xxAA?probe=1366:1015:000683",
    ] {
        let t = TransportSpec::parse(s).expect(s);
        assert_eq!(TransportSpec::parse(&t.to_string()), Ok(t));
    }
}

#[test]
fn unknown_key_names_file_and_key() {
    let e = parse("name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: local\nthreadz: 2\n")
        .expect_err("unknown key");
    let m = e.to_string();
    assert!(m.contains("targets/t.yaml") && m.contains("threadz"), "{m}");
}

#[test]
fn invalid_values_name_the_key() {
    let cases = [
        (
            "name: x\ntriple: sparc-sun-solaris\ntransport: local\n",
            "triple",
        ),
        (
            "name: x\ntriple: aarch64-unknown-linux-gnu\ntransport: local\n",
            "triple",
        ),
        (
            "name: x\ntriple: aarch64-unknown-linux-gnu\ntransport: ssh://pi@h\n",
            "agent_path",
        ),
        (
            "name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: local\nthreads: 0\n",
            "threads",
        ),
        (
            "name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: local\nbench: {min_runs: 9, max_runs: 3}\n",
            "bench.min_runs",
        ),
        (
            "name: 'a b'\ntriple: x86_64-unknown-linux-gnu\ntransport: local\n",
            "name",
        ),
        (
            "name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: carrier-pigeon\n",
            "transport",
        ),
    ];
    for (yaml, key) in cases {
        match parse(yaml) {
            Err(TargetError::Invalid { key: k, file, .. }) => {
                assert_eq!(k, key, "{yaml}");
                assert_eq!(file, "targets/t.yaml");
            }
            other => panic!("{yaml}: expected invalid {key}, got {other:?}"),
        }
    }
}

#[test]
fn qemu_is_emulated_and_limits_fill_in() {
    let t = parse("name: q\ntriple: aarch64-unknown-linux-gnu\ntransport: qemu\nthreads: 2\npin_cpu: 1\nbench: {max_runs: 7, min_runs: 3}\n")
        .expect("valid");
    assert!(t.emulated());
    assert_eq!(t.bench.max_runs, 7);
    assert_eq!(t.bench.threads, Some(2));
    assert_eq!(t.bench.pin_cpu, Some(1));
}

#[test]
fn every_shipped_target_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("targets/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let t = Target::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                Some(t.name.as_str()),
                path.file_stem().and_then(|s| s.to_str()),
                "name matches file"
            );
            names.push(t.name);
        }
    }
    names.sort();
    for want in [
        "android-arm64",
        "local",
        "qemu-aarch64",
        "qemu-armv7",
        "rpi3",
        "rpi4",
        "serial-example",
        "tcp-example",
        "qemu-mps2-an386",
        "stm32f746-disco",
        "nrf52840-dk",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing target {want}: {names:?}"
        );
    }
    let found = Target::resolve("qemu-armv7", &dir).expect("by name");
    assert!(found.emulated());
    let missing = Target::resolve("nope", &dir).expect_err("unknown");
    assert!(
        missing.to_string().contains("rpi4"),
        "lists known targets: {missing}"
    );
}

#[test]
fn hostile_transports_are_refused() {
    for s in [
        "ssh://-oProxyCommand=touch /tmp/x",
        "ssh://-oProxyCommand=touch%20/tmp/x",
        "ssh://pi@-oProxyCommand=x",
        "ssh://-l@host",
        "ssh://pi@host;touch x",
        "ssh://pi@host touch",
        "ssh://pi@$(touch x)",
        "ssh://pi@host:22;x",
        "ssh://pi@host:0",
        "ssh://pi@host:99999",
        "ssh://pi@fe80::1",
        "ssh://pi@[fe80::1",
        "ssh://pi@[fe80::1]x",
        "ssh://pi@[not-an-ip]:22",
        "ssh://pi@[::1%-x]",
        "ssh://@host",
        "ssh://pi@",
        "ssh://",
        "adb://-s",
        "adb://x;reboot",
        "adb://x y",
    ] {
        assert!(TransportSpec::parse(s).is_err(), "{s} was accepted");
    }
}

#[test]
fn hostile_agent_paths_are_refused_naming_the_key() {
    for path in [
        "relative/padnas-agent",
        "-oProxyCommand=x",
        "/tmp/a\nreboot",
        "/tmp/dir/",
    ] {
        let yaml = format!(
            "name: x\ntriple: aarch64-unknown-linux-gnu\ntransport: ssh://pi@h\nagent_path: {path:?}\n"
        );
        match parse(&yaml) {
            Err(TargetError::Invalid { key, file, .. }) => {
                assert_eq!(key, "agent_path", "{path:?}");
                assert_eq!(file, "targets/t.yaml");
            }
            other => panic!("{path:?}: {other:?}"),
        }
    }
    // Shell metacharacters are fine in a path: it is quoted on its way.
    let t = parse(
        "name: x\ntriple: aarch64-unknown-linux-gnu\ntransport: ssh://pi@h\nagent_path: '/tmp/a;reboot'\n",
    )
    .expect("quoted, not refused");
    assert_eq!(t.agent_path.as_deref(), Some("/tmp/a;reboot"));
}

#[test]
fn an_emulated_microcontroller_needs_its_boards_triple_and_sane_memory() {
    let ok = "name: m\ntriple: thumbv7em-none-eabihf\ntransport: qemu-system://mps2-an386\n\
              memory: { sram_bytes: 4000, flash_bytes: 9000, reserved_sram_bytes: 1000 }\n";
    let t = parse(ok).unwrap();
    assert!(t.emulated() && t.is_mcu());
    assert_eq!(t.memory.unwrap().reserved_flash_bytes, 0);
    let wrong_triple = ok.replace("thumbv7em-none-eabihf", "thumbv8m.main-none-eabihf");
    let e = parse(&wrong_triple).unwrap_err().to_string();
    assert!(e.contains("triple") && e.contains("mps2-an386"), "{e}");
    let e = parse(&ok.replace("mps2-an386", "mps2-an999"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("transport") && e.contains("mps2-an386"), "{e}");
    let e = parse(&ok.replace("reserved_sram_bytes: 1000", "reserved_sram_bytes: 4000"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("memory.reserved_sram_bytes"), "{e}");
    let e = parse(&ok.replace("flash_bytes: 9000", "flash_bytes: 9000, sram: 1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn probe_rs_destinations_are_validated() {
    for bad in [
        "probe-rs://",
        "probe-rs://-oops",
        "probe-rs://chip;rm",
        "probe-rs://chip?probe=xyz",
        "probe-rs://chip?probe=1366:1015:a-b",
        "probe-rs://chip?speed=4000",
    ] {
        assert!(TransportSpec::parse(bad).is_err(), "{bad} was accepted");
    }
    let e =
        parse("name: p\ntriple: aarch64-unknown-linux-gnu\ntransport: probe-rs://STM32F746NGHx\n")
            .unwrap_err()
            .to_string();
    assert!(e.contains("triple") && e.contains("thumb"), "{e}");
}
