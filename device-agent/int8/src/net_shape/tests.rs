use super::*;
use crate::testkit::{head_shape, stem_shape};

#[test]
fn sizes_of_stems() {
    // Fashion-MNIST: 1×28×28 → 16, 3×3, stride 1.
    let s = stem_shape(1, 16, 3, 1, (28, 28));
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.out_hw(), (28, 28));
    assert_eq!((s.input_len(), s.output_len()), (784, 12544));
    assert_eq!(s.weight_bytes(), (9 + 12) * 16);
    assert_eq!(s.peak_activation_bytes(), 784 + 12544);
    // CIFAR: 3×32×32 → 32, 3×3, stride 2.
    let s = stem_shape(3, 32, 3, 2, (32, 32));
    assert_eq!(s.out_hw(), (16, 16));
    assert_eq!(s.weight_bytes(), (27 + 12) * 32);
    assert_eq!(s.peak_activation_bytes(), 3072 + 8192);
    // Stride 2 on an odd size, 5×5, non-square.
    let s = stem_shape(3, 8, 5, 2, (7, 4));
    assert_eq!(s.out_hw(), (4, 2));
    assert_eq!((s.input_len(), s.output_len()), (84, 64));
    assert_eq!(s.weight_bytes(), (75 + 12) * 8);
    assert_eq!(s.peak_activation_bytes(), 148);
    let c = s.conv_shape();
    assert_eq!(
        (c.h, c.w, c.in_c, c.out_c, c.kernel, c.stride),
        (7, 4, 3, 8, 5, 2)
    );
    assert_eq!(c.out_hw(), s.out_hw());
}

#[test]
fn sizes_of_heads() {
    // 24×4×4 → 256 channels → 10 classes: the input and the convolution
    // output dominate.
    let s = head_shape(24, 256, 10, (4, 4));
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(
        (s.input_len(), s.conv_len(), s.output_len()),
        (384, 4096, 10)
    );
    // (24 + 12) · 256 + (256 + 4) · 10 + 8
    assert_eq!(s.weight_bytes(), 9216 + 2600 + 8);
    // max(I + P, P + C, C + L) = max(4480, 4352, 266)
    assert_eq!(s.peak_activation_bytes(), 4480);
    assert_eq!(s.arena_bytes(), 4096 + 256);
    // The pooled vector and the logits dominate on a 1×1 map.
    let s = head_shape(8, 64, 100, (1, 1));
    assert_eq!(s.peak_activation_bytes(), 64 + 100);
    // The convolution output and the pooled vector dominate.
    let s = head_shape(1, 16, 2, (2, 2));
    assert_eq!(s.peak_activation_bytes(), 64 + 16);
    assert_eq!(s.weight_bytes(), 13 * 16 + 20 * 2 + 8);
    let (c, p, f) = (s.conv_shape(), s.pool_shape(), s.fc_shape());
    assert_eq!((c.pixels, c.in_c, c.out_c), (4, 1, 16));
    assert_eq!((p.pixels, p.channels), (4, 16));
    assert_eq!((f.in_features, f.out_features), (16, 2));
}

#[test]
fn validate_rejects_out_of_range_fields_and_overflow() {
    let ok = stem_shape(3, 16, 3, 2, (32, 32));
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(StemShape { kernel: 1, ..ok }.validate(), Ok(()));
    for bad in [
        StemShape { in_c: 0, ..ok },
        StemShape { out_c: 0, ..ok },
        StemShape { h: 0, ..ok },
        StemShape { w: 0, ..ok },
        StemShape { kernel: 0, ..ok },
        StemShape { kernel: 4, ..ok },
        StemShape { stride: 0, ..ok },
        StemShape { stride: 3, ..ok },
        StemShape {
            h: usize::MAX / 2,
            ..ok
        },
        StemShape {
            kernel: (1 << (usize::BITS / 2)) + 1,
            ..ok
        },
        StemShape {
            out_c: usize::MAX / 8,
            ..ok
        },
    ] {
        assert!(matches!(bad.validate(), Err(Error::Shape(_))), "{bad:?}");
    }
    let huge = StemShape {
        h: usize::MAX,
        w: usize::MAX,
        ..ok
    };
    assert_eq!(huge.peak_activation_bytes(), usize::MAX);
    assert_eq!(huge.input_len(), usize::MAX);
    let huge = StemShape {
        in_c: usize::MAX,
        ..ok
    };
    assert_eq!(huge.weight_bytes(), usize::MAX);

    let ok = head_shape(24, 256, 10, (4, 4));
    // The largest map the pooling takes (and, below, one pixel more).
    assert_eq!(head_shape(1, 1, 1, (MAX_POOL_PIXELS, 1)).validate(), Ok(()));
    for bad in [
        HeadShape { in_c: 0, ..ok },
        HeadShape { channels: 0, ..ok },
        HeadShape { classes: 0, ..ok },
        HeadShape { h: 0, ..ok },
        HeadShape { w: 0, ..ok },
        HeadShape {
            h: MAX_POOL_PIXELS + 1,
            w: 1,
            ..ok
        },
        HeadShape {
            h: 4096,
            w: 4096,
            ..ok
        },
        HeadShape {
            h: usize::MAX,
            w: 2,
            ..ok
        },
        HeadShape {
            channels: usize::MAX / 8,
            ..ok
        },
        HeadShape {
            classes: usize::MAX,
            ..ok
        },
    ] {
        assert!(matches!(bad.validate(), Err(Error::Shape(_))), "{bad:?}");
    }
    let huge = HeadShape {
        channels: usize::MAX,
        ..ok
    };
    assert_eq!(huge.weight_bytes(), usize::MAX);
    assert_eq!(huge.peak_activation_bytes(), usize::MAX);
    assert_eq!(huge.arena_bytes(), usize::MAX);
}
