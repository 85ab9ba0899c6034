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

use padnas::memory::block_footprint;
use padnas::qemu_system::QemuSystemTransport;
use padnas::session::{self, measurement_label};
use padnas::space::BlockKey;
use padnas::target::Target;
use padnas_agent::ClientError;
use padnas_agent::client::Client;
use padnas_agent::proto::{BenchLimits, ErrorCode, Int8Block};
use padnas_int8::{BlockShape, RandomBlock, random_input, run_block};

fn target(dir: &Path) -> Target {
    let yaml = "name: mcu-test\n\
                triple: thumbv7em-none-eabihf\n\
                transport: qemu-system://mps2-an386\n\
                memory: { sram_bytes: 262144, flash_bytes: 1048576 }\n";
    let path = dir.join("mcu-test.yaml");
    std::fs::write(&path, yaml).unwrap();
    Target::load(&path).unwrap()
}

fn spec(key: &BlockKey, seed: u64) -> (Int8Block, BlockShape) {
    let BlockKey::MbConv {
        input,
        kernel,
        expansion,
        out_channels,
        stride,
    } = *key
    else {
        panic!("not an MBConv key: {key}");
    };
    let shape = BlockShape {
        in_c: input.channels,
        out_c: out_channels,
        expand: expansion,
        kernel,
        stride,
        h: input.height,
        w: input.width,
    };
    let u = |v: usize| v as u32;
    let block = Int8Block {
        kind: padnas_agent::proto::Int8Kind::Mbconv,
        classes: 0,
        in_c: u(shape.in_c),
        out_c: u(shape.out_c),
        expand: u(shape.expand),
        kernel: u(shape.kernel),
        stride: u(shape.stride),
        h: u(shape.h),
        w: u(shape.w),
        seed,
    };
    (block, shape)
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

    // Two blocks, one with a residual and one with stride 2 and no expansion
    // of its own weights' seed: outputs equal the host's bit for bit, and
    // the memory the firmware allocated is what the host's model says.
    for (key, seed) in [
        ("mbconv:k3e3:in16x8x8:out16:s1", 11u64),
        ("mbconv:k5e6:in8x9x9:out16:s2", 12),
        ("mbconv:k7e1:in8x6x6:out8:s1", 13),
    ] {
        let key: BlockKey = key.parse().unwrap();
        let (block, shape) = spec(&key, seed);
        let loaded = s.client.load_int8_block(block).expect("load");
        assert_eq!(loaded.input_shape, vec![1, shape.h, shape.w, shape.in_c]);
        let memory = loaded.memory.expect("the firmware reports memory");
        let host = block_footprint(&key).unwrap();
        assert_eq!(
            (memory.weight_bytes, memory.activation_bytes),
            (host.flash_bytes, host.sram_bytes),
            "{key}"
        );

        let input = random_input(shape.input_len(), seed ^ 0xABCD);
        let reference = RandomBlock::new(shape, seed).unwrap();
        let mut arena = vec![0i8; shape.arena_bytes()];
        let mut expected = vec![0i8; shape.output_len()];
        run_block(
            &shape,
            &reference.params(),
            &input,
            &mut arena,
            &mut expected,
        )
        .unwrap();
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
        assert!(cycles.min > 0 && cycles.min <= cycles.median && cycles.median <= cycles.max);
        let ms = cycles.median as f64 * 1e3 / cycles.clock_hz as f64;
        assert!(
            (stats.median_ms - ms).abs() <= ms * 0.5 + 1e-6,
            "median {} ms vs {} cycles",
            stats.median_ms,
            cycles.median
        );
        s.client.unload(loaded.handle).expect("unload");
    }

    // Requests the firmware cannot serve get errors that say why, and it
    // goes on serving.
    let too_big = Int8Block {
        kind: padnas_agent::proto::Int8Kind::Mbconv,
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
    client.hello(None).expect("hello after noise");
    noise(&tty);
    let (block, _) = spec(&"mbconv:k3e3:in8x4x4:out8:s1".parse().unwrap(), 5);
    let loaded = client.load_int8_block(block).expect("served after noise");
    assert_eq!(loaded.output_shape, vec![1, 4, 4, 8]);
    client.shutdown().ok();
}
