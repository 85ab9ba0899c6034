//! The microcontroller firmware agent (device-agent/mcu) booted on an
//! emulated Cortex-M4 board (qemu-system-arm mps2-an386), its UART on a
//! pseudo-terminal driven by the host's serial transport: Hello with the
//! board's facts, int8 blocks loaded from a seed, Infer bit for bit equal to
//! the host's reference (the same kernels compiled for x86_64), Bench in
//! cycles labelled emulated, memory as the host computes it, and garbage on
//! the UART leaving the firmware serving. The test command builds the
//! firmware (scripts/build-agent.sh thumbv7em-none-eabihf) first; a missing
//! one, or a missing qemu-system-arm, fails.

use std::io::Write;
use std::path::Path;

use padnas::memory::{block_footprint, int8_block};
use padnas::qemu_system::QemuSystemTransport;
use padnas::session::{self, measurement_label};
use padnas::space::BlockKey;
use padnas::target::Target;
use padnas_agent::ClientError;
use padnas_agent::client::Client;
use padnas_agent::proto::{
    BenchLimits, ErrorCode, HeaderEncoding, HelloRequest, Int8Block, Int8Kind, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, ProtoError, Request, Response,
};
use padnas_agent::transport::TransportError;

use crate::util::{json_line, padnas};
use padnas_int8::{
    BlockShape, HeadShape, RandomBlock, RandomHead, RandomStem, StemShape, encode_block,
    encode_head, encode_stem, random_input, run_block, run_head, run_stem,
};

fn target(dir: &Path) -> Target {
    let yaml = "name: mcu-test\n\
                triple: thumbv7em-none-eabihf\n\
                transport: qemu-system://mps2-an386\n\
                memory: { sram_bytes: 262144, flash_bytes: 1048576 }\n";
    let path = dir.join("mcu-test.yaml");
    std::fs::write(&path, yaml).unwrap();
    Target::load(&path).unwrap()
}

/// The host's output for the int8 block of `key` drawn from `seed`: the same
/// kernels, compiled for this machine.
fn host_reference(key: &BlockKey, seed: u64, input: &[i8]) -> Vec<i8> {
    match shape_of(key) {
        Shape3::Stem(shape) => {
            let net = RandomStem::new(shape, seed).unwrap();
            let mut out = vec![0i8; shape.output_len()];
            run_stem(&shape, &net.params(), input, &mut out).unwrap();
            out
        }
        Shape3::Block(shape) => {
            let net = RandomBlock::new(shape, seed).unwrap();
            let mut arena = vec![0i8; shape.arena_bytes()];
            let mut out = vec![0i8; shape.output_len()];
            run_block(&shape, &net.params(), input, &mut arena, &mut out).unwrap();
            out
        }
        Shape3::Head(shape) => {
            let net = RandomHead::new(shape, seed).unwrap();
            let mut arena = vec![0i8; shape.arena_bytes()];
            let mut out = vec![0i8; shape.output_len()];
            run_head(&shape, &net.params(), input, &mut arena, &mut out).unwrap();
            out
        }
    }
}

#[test]
fn the_firmware_runs_int8_blocks_bit_exact_with_the_host_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path());
    let firmware = session::agent_binary_for(&target).unwrap_or_else(|e| {
        panic!("{e} (scripts/test.sh builds it)");
    });
    assert!(firmware.is_file());
    let mut s = session::open(&target).expect("hello from the emulated board");

    // Hello: the board's facts, and a label that says emulated.
    let mcu = s
        .info
        .mcu
        .clone()
        .expect("a microcontroller agent says what board it is");
    assert_eq!(s.info.arch, "thumbv7em");
    assert_eq!(mcu.core, "cortex-m4");
    assert_eq!(mcu.board, "mps2-an386");
    assert_eq!(mcu.clock_hz, 25_000_000);
    assert_eq!(mcu.timer, "systick", "QEMU has no DWT cycle counter");
    assert!(mcu.heap_bytes > 0 && mcu.sram_bytes >= mcu.heap_bytes);
    let label = measurement_label(&target, &s.info);
    assert!(label.starts_with("emulated"), "{label}");

    // A stem, MBConv blocks (with a residual, with stride 2, without
    // expansion) and a head: outputs equal the host's bit for bit, and the
    // memory the firmware allocated is what the host's model says.
    for (key, seed) in [
        ("stem:k3:in1x28x28:out8:s2:relu6", 10u64),
        ("mbconv:k3e3:in16x8x8:out16:s1", 11),
        ("mbconv:k5e6:in8x9x9:out16:s2", 12),
        ("mbconv:k7e1:in8x6x6:out8:s1", 13),
        ("head:in24x4x4:out64:classes10:relu6", 14),
    ] {
        let key: BlockKey = key.parse().unwrap();
        let loaded = s
            .client
            .load_int8_block(int8_block(&key, seed))
            .expect("load");
        let memory = loaded.memory.expect("the firmware reports memory");
        let host = block_footprint(&key).unwrap();
        assert_eq!(
            (memory.weight_bytes, memory.activation_bytes),
            (host.flash_bytes, host.sram_bytes),
            "{key}"
        );

        let n: usize = loaded.input_shape.iter().product();
        let input = random_input(n, seed ^ 0xABCD);
        let expected = host_reference(&key, seed, &input);
        let as_f32: Vec<f32> = input.iter().map(|&v| f32::from(v)).collect();
        let (out_shape, out) = s
            .client
            .infer(loaded.handle, &loaded.input_shape, &as_f32)
            .expect("infer");
        assert_eq!(out_shape, loaded.output_shape);
        let got: Vec<i8> = out.iter().map(|&v| v as i8).collect();
        assert_eq!(got, expected, "{key}: firmware and host differ");
        assert!(
            expected.iter().any(|&v| v != expected[0]),
            "{key}: a constant output would prove little"
        );

        let stats = s
            .client
            .bench(
                loaded.handle,
                &BenchLimits {
                    warmup_runs: 1,
                    warmup_ms: 0,
                    min_runs: 3,
                    max_runs: 5,
                    max_time_ms: 1000,
                    threads: None,
                    pin_cpu: None,
                    return_samples: true,
                },
            )
            .expect("bench");
        let cycles = stats.cycles.expect("cycles from a microcontroller");
        assert!((3..=5).contains(&stats.runs), "{}", stats.runs);
        // Under -icount the emulated SysTick counts instructions: every run
        // of a block takes the same count, up to the tick a run starts in,
        // however busy this machine is.
        assert!(
            cycles.min > 0 && cycles.min <= cycles.median && cycles.median <= cycles.max,
            "{key}: {cycles:?}"
        );
        assert!(cycles.max - cycles.min <= 1, "{key}: {cycles:?}");
        let ms = |c: u64| c as f64 * 1e3 / cycles.clock_hz as f64;
        assert!(
            (stats.max_ms - ms(cycles.max)).abs() <= 1e-9 * ms(cycles.max),
            "{key}: max {} ms vs {} cycles",
            stats.max_ms,
            cycles.max
        );
        s.client.unload(loaded.handle).expect("unload");
    }

    // Requests the firmware cannot serve get errors that say why, and it
    // goes on serving.
    let too_big = Int8Block {
        kind: Int8Kind::Mbconv,
        classes: 0,
        in_c: 64,
        out_c: 64,
        expand: 6,
        kernel: 7,
        stride: 1,
        h: 28,
        w: 28,
        seed: 1,
    };
    match s.client.load_int8_block(too_big) {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::BadModel);
            assert!(e.message.contains("heap"), "{}", e.message);
        }
        other => panic!("a block larger than the heap was not refused: {other:?}"),
    }
    match s.client.load_model(b"not an int8 block", None) {
        Err(ClientError::Remote(e)) => assert_eq!(e.code, ErrorCode::BadModel),
        other => panic!("ONNX on the firmware: {other:?}"),
    }

    s.close();
}

#[test]
fn garbage_on_the_uart_leaves_the_firmware_serving() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path());
    let firmware = session::agent_binary_for(&target).expect("firmware built");
    let board = QemuSystemTransport::start("mps2-an386", &firmware).expect("boot");
    // Line noise, written through the pty as it would arrive on a wire,
    // before and between requests: skipped, never answered, never fatal.
    let noise = |tty: &Path| {
        let mut line = std::fs::OpenOptions::new().write(true).open(tty).unwrap();
        line.write_all(b"\x00\xffPDN\x13garbage \xfe\r\n").unwrap();
        line.flush().unwrap();
    };
    let tty = board.pty().to_path_buf();
    noise(&tty);
    let mut client = Client::new(Box::new(board));
    // The firmware reads binary headers only (JSON would take half its
    // flash): a JSON Hello is answered, in binary, with the code a host
    // switches on, and the session goes on in binary.
    let json_hello = Request::Hello(HelloRequest {
        protocol_major: PROTOCOL_MAJOR,
        protocol_minor: PROTOCOL_MINOR,
        token: None,
    })
    .into_frame_as(HeaderEncoding::Json)
    .unwrap();
    client.transport_mut().send(&json_hello).unwrap();
    // The boot banner and the noise come first, reported as skipped.
    let reply = loop {
        match client.transport_mut().recv() {
            Err(TransportError::Proto(ProtoError::Garbage { .. })) => continue,
            other => break other.unwrap().expect("a reply"),
        }
    };
    assert_eq!(reply.header_encoding(), HeaderEncoding::Binary);
    match Response::from_frame(reply).unwrap() {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnsupportedEncoding, "{e}");
            assert!(e.message.contains("json"), "{e}");
        }
        other => panic!("a JSON Hello to the firmware: {other:?}"),
    }
    noise(&tty);
    client.hello(None).expect("hello after noise");
    assert_eq!(client.header_encoding(), HeaderEncoding::Binary);
    noise(&tty);
    let block = int8_block(&"mbconv:k3e3:in8x4x4:out8:s1".parse().unwrap(), 5);
    let loaded = client.load_int8_block(block).expect("served after noise");
    assert_eq!(loaded.output_shape, vec![1, 4, 4, 8]);
    client.shutdown().ok();
}

/// `padnas profile` of the microcontroller space on the emulated board:
/// every block (stem, MBConv, head) sent as an int8 description, timed by
/// the firmware in cycles, the table labelled emulated and filed as such.
#[test]
fn the_mcu_space_profiles_on_the_emulated_board() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let space_path = repo.join("configs/spaces/mcu-small.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_padnas"))
        .current_dir(&repo)
        .args(["profile", "--target", "qemu-mps2-an386", "--space"])
        .arg(&space_path)
        .arg("--tables-dir")
        .arg(dir.path())
        .args(["--max-runs", "3", "--ci-pct", "50", "--sentinel-every", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let table_path = std::path::PathBuf::from(summary["out"].as_str().unwrap());
    assert!(
        table_path.starts_with(dir.path().join("emulated/qemu-mps2-an386")),
        "{}",
        table_path.display()
    );
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&table_path).unwrap()).unwrap();
    assert_eq!(t["header"]["emulated"], true);
    let label = t["header"]["label"].as_str().unwrap();
    assert!(label.contains("qemu-system-arm"), "{label}");
    assert_eq!(t["header"]["arch"], "thumbv7em");
    let space = padnas::space::Space::load(&space_path).unwrap();
    let entries = t["entries"].as_object().unwrap();
    assert_eq!(entries.len(), space.unique_blocks().len());
    for key in space.unique_blocks() {
        let e = &entries[&key.to_string()];
        assert!(
            e["median_ms"].as_f64().is_some_and(|m| m >= 0.0),
            "{key}: {e}"
        );
    }
}

/// The whole job for a microcontroller, under emulation: the tiny space
/// profiled on the firmware, int8 flash a hard constraint of every search
/// (configs/ci-tiny/mcu-board.yaml refuses part of the space), a network
/// chosen and exported that fits, verify skipped (the firmware runs no ONNX).
#[test]
fn the_mcu_pipeline_runs_end_to_end_and_admits_only_networks_that_fit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for f in ["mcu-job.yaml", "mcu-board.yaml", "space.yaml"] {
        std::fs::copy(repo.join("configs/ci-tiny").join(f), dir.path().join(f)).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_padnas"))
        .current_dir(dir.path())
        .args(["run", "mcu-job.yaml", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("run-mcu");
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let latency = read(&run.join("latency.json"));
    let limit = padnas::memory::MemoryLimit {
        sram_bytes: latency["memory"]["sram_bytes"].as_u64().unwrap(),
        flash_bytes: latency["memory"]["flash_bytes"].as_u64().unwrap(),
    };
    assert_eq!(limit.flash_bytes, 6000);
    assert_eq!(latency["emulated"], true);

    // The limit bites: some networks of the space do not fit.
    let space = padnas::space::Space::load(dir.path().join("space.yaml")).unwrap();
    let model = padnas::memory::MemoryModel::new(&space).unwrap();
    let cards: Vec<usize> = space.layers().iter().map(|l| l.ops.len()).collect();
    let mut refused = 0;
    let mut genome = vec![0usize; cards.len()];
    'all: loop {
        if !model.footprint(&genome).fits(&limit) {
            refused += 1;
        }
        for (g, &c) in genome.iter_mut().zip(&cards) {
            *g += 1;
            if *g < c {
                continue 'all;
            }
            *g = 0;
        }
        break;
    }
    assert!(
        refused > 0,
        "the limit refuses nothing; tighten mcu-board.yaml"
    );

    // Every architecture any search evaluated fits, and says so.
    let mut searched = 0;
    for search in [
        "stage-1/search.json",
        "stage-2/search.json",
        "final/search.json",
    ] {
        let rec = read(&run.join(search));
        assert_eq!(rec["memory"]["flash_bytes"], 6000, "{search}");
        for c in rec["candidates"].as_array().unwrap() {
            let flash = c["memory"]["flash_bytes"].as_u64().unwrap();
            let sram = c["memory"]["sram_bytes"].as_u64().unwrap();
            assert!(
                flash <= limit.flash_bytes && sram <= limit.sram_bytes,
                "{search}: {c}"
            );
            searched += 1;
        }
    }
    assert!(searched > 0);
    let pareto = read(&run.join("pareto.json"));
    assert!(!pareto["pareto"].as_array().unwrap().is_empty());
    assert_eq!(pareto["memory_limit"]["flash_bytes"], 6000);
    for c in pareto["pareto"].as_array().unwrap() {
        assert!(
            c["int8_flash_bytes"].as_u64().is_some_and(|f| f <= 6000),
            "{c}"
        );
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("int8 flash (bytes)"), "{report}");
    assert!(run.join("model.onnx").is_file());
    // The int8 network, with its memory and int8 accuracy beside the float.
    let int8 = std::fs::read(run.join("model.int8.onnx")).expect("model.int8.onnx");
    let text = String::from_utf8_lossy(&int8);
    for key in [
        "padnas.int8.flash_bytes",
        "padnas.int8.peak_sram_bytes",
        "padnas.int8.test_accuracy",
        "padnas.test_accuracy",
    ] {
        assert!(text.contains(key), "{key} missing from the int8 metadata");
    }
    assert!(
        !run.join("verify.json").exists(),
        "verify ran on a firmware target"
    );
}

/// The Cortex-M33 build (thumbv8m.main) on its emulated board
/// (mps2-an505): the same protocol and the same bits.
#[test]
fn the_cortex_m33_build_serves_the_same_blocks_on_mps2_an505() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m33.yaml");
    std::fs::write(
        &path,
        "name: m33\ntriple: thumbv8m.main-none-eabihf\ntransport: qemu-system://mps2-an505\n",
    )
    .unwrap();
    let target = Target::load(&path).unwrap();
    let mut s = session::open(&target).expect("hello from the emulated M33");
    let mcu = s.info.mcu.clone().expect("board facts");
    assert_eq!(
        (s.info.arch.as_str(), mcu.core.as_str()),
        ("thumbv8m.main", "cortex-m33")
    );
    assert_eq!(mcu.clock_hz, 20_000_000);
    let key: BlockKey = "mbconv:k5e6:in8x9x9:out16:s2".parse().unwrap();
    let loaded = s
        .client
        .load_int8_block(int8_block(&key, 21))
        .expect("load");
    let n: usize = loaded.input_shape.iter().product();
    let input = random_input(n, 99);
    let as_f32: Vec<f32> = input.iter().map(|&v| f32::from(v)).collect();
    let (_, out) = s
        .client
        .infer(loaded.handle, &loaded.input_shape, &as_f32)
        .expect("infer");
    let got: Vec<i8> = out.iter().map(|&v| v as i8).collect();
    assert_eq!(got, host_reference(&key, 21, &input));
    s.close();
}

/// Parameters sent by the host (as a quantised trained network's would be)
/// instead of drawn from the seed: the firmware runs exactly those, and a
/// blob that does not fit the block is refused.
#[test]
fn the_firmware_runs_the_parameters_the_host_sends() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path());
    let mut s = session::open(&target).expect("hello");
    for (key, sent_seed) in [
        ("stem:k3:in1x28x28:out8:s2:relu6", 31u64),
        ("mbconv:k5e6:in8x9x9:out16:s2", 32),
        ("head:in24x4x4:out64:classes10:relu6", 33),
    ] {
        let key: BlockKey = key.parse().unwrap();
        // The description says seed 1; the parameters come from another.
        let spec = int8_block(&key, 1);
        let blob = match shape_of(&key) {
            Shape3::Stem(shape) => {
                encode_stem(&RandomStem::new(shape, sent_seed).unwrap().params())
            }
            Shape3::Block(shape) => {
                encode_block(&RandomBlock::new(shape, sent_seed).unwrap().params())
            }
            Shape3::Head(shape) => {
                encode_head(&RandomHead::new(shape, sent_seed).unwrap().params())
            }
        };
        // One byte short: refused, naming the sizes; then the real thing.
        match s
            .client
            .load_int8_block_with(spec, blob[..blob.len() - 1].to_vec())
        {
            Err(ClientError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::BadModel);
                assert!(e.message.contains("bytes"), "{}", e.message);
            }
            other => panic!("{key}: a short blob was accepted: {other:?}"),
        }
        let loaded = s.client.load_int8_block_with(spec, blob).expect("load");
        let n: usize = loaded.input_shape.iter().product();
        let input = random_input(n, 7);
        let as_f32: Vec<f32> = input.iter().map(|&v| f32::from(v)).collect();
        let (_, out) = s
            .client
            .infer(loaded.handle, &loaded.input_shape, &as_f32)
            .expect("infer");
        let got: Vec<i8> = out.iter().map(|&v| v as i8).collect();
        assert_eq!(got, host_reference(&key, sent_seed, &input), "{key}");
        assert_ne!(
            got,
            host_reference(&key, 1, &input),
            "{key}: ran the seed's"
        );
        s.client.unload(loaded.handle).unwrap();
    }
    s.close();
}

enum Shape3 {
    Stem(StemShape),
    Block(BlockShape),
    Head(HeadShape),
}

fn shape_of(key: &BlockKey) -> Shape3 {
    match *key {
        BlockKey::Stem {
            input,
            kernel,
            out_channels,
            stride,
            ..
        } => Shape3::Stem(StemShape {
            in_c: input.channels,
            out_c: out_channels,
            kernel,
            stride,
            h: input.height,
            w: input.width,
        }),
        BlockKey::MbConv {
            input,
            kernel,
            expansion,
            out_channels,
            stride,
        } => Shape3::Block(BlockShape {
            in_c: input.channels,
            out_c: out_channels,
            expand: expansion,
            kernel,
            stride,
            h: input.height,
            w: input.width,
        }),
        BlockKey::Head {
            input,
            channels,
            num_classes,
            ..
        } => Shape3::Head(HeadShape {
            in_c: input.channels,
            channels,
            classes: num_classes,
            h: input.height,
            w: input.width,
        }),
    }
}

/// `padnas agent bench --block KEY` on the emulated board: the firmware
/// times the int8 block and the JSON line carries cycles, labelled emulated.
#[test]
fn agent_bench_times_a_block_on_the_firmware() {
    let (code, out, err) = padnas(&[
        "agent",
        "bench",
        "--target",
        "qemu-mps2-an386",
        "--block",
        "mbconv:k3e3:in8x8x8:out8:s1",
        "--runs",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let line = json_line(&out);
    assert_eq!(line["runs"], 3, "{line}");
    assert_eq!(line["emulated"], true);
    assert_eq!(line["model"], "mbconv:k3e3:in8x8x8:out8:s1");
    assert!(
        line["cycles"]["clock_hz"].as_u64() == Some(25_000_000),
        "{line}"
    );
    assert_eq!(line["output_shape"], serde_json::json!([1, 8, 8, 8]));
}
