use super::*;
use crate::testkit::block_shape;

#[test]
fn sizes_of_a_strided_block() {
    // MobileNetV2-like: 16 -> 24 channels, ratio 6, 3×3, stride 2, 8×8 input.
    let s = block_shape(16, 24, 6, 3, 2, (8, 8));
    assert!(s.validate().is_ok());
    assert!(!s.residual());
    assert_eq!(s.mid_c(), 96);
    assert_eq!(s.out_hw(), (4, 4));
    assert_eq!(
        (
            s.input_len(),
            s.expanded_len(),
            s.depthwise_len(),
            s.output_len()
        ),
        (1024, 6144, 1536, 384)
    );
    // expand (16 + 12) * 96 + depthwise (9 + 12) * 96 + project (96 + 12) * 24
    assert_eq!(s.weight_bytes(), 2688 + 2016 + 2592);
    // max(I + E, E + D, D + O) = max(7168, 7680, 1920)
    assert_eq!(s.peak_activation_bytes(), 7680);
    assert_eq!(s.arena_bytes(), 6144 + 1536);
}

#[test]
fn sizes_of_a_residual_block() {
    let s = block_shape(8, 8, 3, 5, 1, (5, 5));
    assert!(s.residual());
    let (i, e, d, o) = (200, 600, 600, 200);
    assert_eq!(
        (
            s.input_len(),
            s.expanded_len(),
            s.depthwise_len(),
            s.output_len()
        ),
        (i, e, d, o)
    );
    // The input stays alive through the depthwise: I + E + D.
    assert_eq!(s.peak_activation_bytes(), i + e + d);
    assert_eq!(s.arena_bytes(), e + d);
    assert_eq!(
        s.weight_bytes(),
        (8 + 12) * 24 + (25 + 12) * 24 + (24 + 12) * 8
    );
}

#[test]
fn sizes_without_expansion() {
    // Ratio 1: no expand layer, no expanded tensor.
    let s = block_shape(32, 16, 1, 3, 1, (4, 4));
    assert_eq!(s.expanded_len(), 0);
    assert_eq!(s.weight_bytes(), (9 + 12) * 32 + (32 + 12) * 16);
    // max(I + D, D + O) = max(512 + 512, 512 + 256)
    assert_eq!(s.peak_activation_bytes(), 1024);
    assert_eq!(s.arena_bytes(), 512);
    // Residual, ratio 1: I + D + O.
    let s = block_shape(16, 16, 1, 7, 1, (3, 3));
    assert_eq!(s.peak_activation_bytes(), 144 * 3);
    // Kernel 7 on a 3×3 input, stride 2: a 2×2 output.
    let s = block_shape(4, 4, 2, 7, 2, (3, 3));
    assert_eq!(s.out_hw(), (2, 2));
    assert!(!s.residual());
}

#[test]
fn output_size_is_the_ceiling() {
    for hw in 1..12 {
        for stride in [1, 2] {
            let s = block_shape(4, 4, 2, 3, stride, (hw, hw));
            assert_eq!(s.out_hw(), (hw.div_ceil(stride), hw.div_ceil(stride)));
        }
    }
    let s = BlockShape {
        h: 7,
        w: 4,
        ..block_shape(4, 8, 2, 5, 2, (1, 1))
    };
    assert_eq!(s.out_hw(), (4, 2));
}

#[test]
fn validate_rejects_out_of_range_fields_and_overflow() {
    let ok = block_shape(8, 8, 6, 3, 1, (4, 4));
    assert!(ok.validate().is_ok());
    for bad in [
        BlockShape { in_c: 0, ..ok },
        BlockShape { out_c: 0, ..ok },
        BlockShape { h: 0, ..ok },
        BlockShape { w: 0, ..ok },
        BlockShape { expand: 0, ..ok },
        BlockShape { expand: 7, ..ok },
        BlockShape { kernel: 1, ..ok },
        BlockShape { kernel: 4, ..ok },
        BlockShape { stride: 3, ..ok },
        BlockShape {
            h: usize::MAX / 2,
            ..ok
        },
        BlockShape {
            in_c: usize::MAX / 4,
            out_c: usize::MAX / 4,
            ..ok
        },
    ] {
        assert!(matches!(bad.validate(), Err(Error::Shape(_))), "{bad:?}");
    }
    // Sizes saturate rather than panic.
    let huge = BlockShape {
        h: usize::MAX,
        w: usize::MAX,
        ..ok
    };
    assert_eq!(huge.peak_activation_bytes(), usize::MAX);
    assert_eq!(huge.input_len(), usize::MAX);
    assert_eq!(huge.arena_bytes(), usize::MAX);
    let huge = BlockShape {
        in_c: usize::MAX,
        ..ok
    };
    assert_eq!(huge.weight_bytes(), usize::MAX);
}
