//! Loader tests on the real Fashion-MNIST and on CIFAR-10 and image-folder
//! fixtures written here.

use std::path::Path;

use super::*;
use crate::config::{Augment, DataConfig, DataKind, FASHION_MNIST_DIR};

#[test]
fn fashion_mnist_has_the_published_counts() {
    let (train, test) = load_fashion_mnist(Path::new(FASHION_MNIST_DIR))
        .expect("Fashion-MNIST (Debian: apt-get install dataset-fashion-mnist)");
    assert_eq!((train.len(), test.len()), (60000, 10000));
    assert_eq!(train.shape, Shape::new(1, 28, 28));
    assert_eq!(train.num_classes(), 10);
    assert_eq!(train.class_counts(), vec![6000; 10]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    assert_eq!(train.pixels.len(), 60000 * 784);
    // Not blank: Fashion-MNIST's mean pixel is about 73.
    let mean = train.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / train.pixels.len() as f64;
    assert!((60.0..90.0).contains(&mean), "{mean}");

    let cfg = DataConfig {
        kind: DataKind::FashionMnist,
        path: FASHION_MNIST_DIR.into(),
        val_split: 0.1,
        augment: Augment::default(),
    };
    let s = load(&cfg, Shape::new(1, 28, 28), 3).unwrap();
    assert_eq!(
        (s.train.len(), s.val.len(), s.test.len()),
        (54000, 6000, 10000)
    );
    // The training subset and the images it leaves out split the training
    // images between them, the same way every time.
    let mut kept = s.clone();
    let left = kept.limit_train(24000, 1);
    assert_eq!((kept.train.len(), left.len()), (24000, 30000));
    let counts: Vec<usize> = (kept.train.class_counts().iter())
        .zip(left.class_counts())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(counts, s.train.class_counts());
    let sum = |set: &ImageSet| set.pixels.iter().map(|&p| u64::from(p)).sum::<u64>();
    assert_eq!(sum(&kept.train) + sum(&left), sum(&s.train));
    let mut again = s.clone();
    assert_eq!(again.limit_train(24000, 1), left);
    assert_eq!(again.train, kept.train);
    assert!(again.limit_train(54000, 1).is_empty());
    assert_eq!(again.train, kept.train);
    let e = load(&cfg, Shape::new(3, 32, 32), 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fashion-mnist images are 1x28x28, but the space expects 3x32x32"),
        "{e}"
    );
}

fn cifar_record(label: u8, seed: u8) -> Vec<u8> {
    let mut r = vec![label];
    // Channel planes: R = seed, G = pixel index low byte, B = 255 − seed.
    r.extend(std::iter::repeat_n(seed, 1024));
    r.extend((0..1024).map(|i| (i % 256) as u8));
    r.extend(std::iter::repeat_n(255 - seed, 1024));
    r
}

#[test]
fn cifar10_fixture_reads_as_hwc() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&nested).unwrap();
    for i in 1..=5u8 {
        let bytes: Vec<u8> = (0..3)
            .flat_map(|k| cifar_record((i + k) % 10, i * 10 + k))
            .collect();
        std::fs::write(nested.join(format!("data_batch_{i}.bin")), bytes).unwrap();
    }
    std::fs::write(nested.join("test_batch.bin"), cifar_record(9, 99)).unwrap();
    let names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    std::fs::write(nested.join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();

    let (train, test) = load_cifar10(dir.path()).unwrap();
    assert_eq!((train.len(), test.len()), (15, 1));
    assert_eq!(train.shape, Shape::new(3, 32, 32));
    assert_eq!(train.classes, names);
    assert_eq!(train.labels[..4], [1, 2, 3, 2]);
    assert_eq!(test.labels, [9]);
    // Image 4 is batch 2, record 1 (seed 21); pixel 300 is (y 9, x 12).
    let img = train.image(4);
    assert_eq!(
        &img[300 * 3..300 * 3 + 3],
        &[21, (300 % 256) as u8, 255 - 21]
    );

    std::fs::write(nested.join("test_batch.bin"), [1, 2, 3]).unwrap();
    let e = load_cifar10(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("whole number"),
        "{e}"
    );
}

#[test]
fn image_folder_fixture_resizes_crops_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |split: &str, class: &str, name: &str, w: u32, h: u32, rgb: [u8; 3]| {
        let d = root.join(split).join(class);
        std::fs::create_dir_all(&d).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                image::Rgb(rgb)
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        img.save(d.join(name)).unwrap();
    };
    write("train", "cat", "a.png", 40, 20, [200, 10, 10]);
    write("train", "cat", "b.jpg", 16, 16, [200, 10, 10]);
    write("train", "dog", "c.png", 16, 32, [10, 200, 10]);
    write("test", "dog", "d.png", 16, 16, [10, 200, 10]);
    std::fs::write(root.join("train/dog/notes.txt"), "not an image").unwrap();

    let shape = Shape::new(3, 16, 16);
    let (train, test) = load_folder(root, shape).unwrap();
    assert_eq!(train.classes, ["cat", "dog"]);
    assert_eq!(train.labels, [0, 0, 1]);
    assert_eq!(test.labels, [1]);
    assert_eq!(train.pixels.len(), 3 * 16 * 16 * 3);
    // The 40×20 image is scaled to 32×16 and centre-cropped: columns 0..4
    // of the crop come from the red left half.
    let a = train.image(0);
    assert!(a[0] > 150 && a[1] < 60, "{:?}", &a[..3]);
    // The right edge comes from the black half.
    assert!(a[15 * 3] < 40, "{:?}", &a[45..48]);
    // PNG is lossless: the 16×16 test image is copied unchanged.
    assert_eq!(&test.image(0)[..3], &[10, 200, 10]);

    let (grey, _) = load_folder(root, Shape::new(1, 8, 8)).unwrap();
    assert_eq!(grey.pixels.len(), 3 * 64);

    // Flat layout: class folders directly under the root, no test split.
    let (flat, none) = load_folder(&root.join("train"), shape).unwrap();
    assert_eq!((flat.len(), none.len()), (3, 0));

    write("test", "bird", "e.png", 4, 4, [1, 2, 3]);
    let e = load_folder(root, shape).unwrap_err().to_string();
    assert!(
        e.contains("class \"bird\" is not in the train split"),
        "{e}"
    );
}

#[cfg(feature = "train")]
#[test]
fn loader_keeps_up_with_training() {
    // Not a benchmark: a floor far below the measured rate (host/README.md),
    // so that a loader accidentally made quadratic or per-pixel slow fails.
    // One libtorch thread, as the loader's few small tensor ops gain nothing
    // from more and concurrent tests would make OpenMP workers wait.
    tch::set_num_threads(1);
    let (train, _) = load_fashion_mnist(Path::new(FASHION_MNIST_DIR)).unwrap();
    let aug = Augment {
        crop_padding: 2,
        hflip: true,
    };
    let mut l = Loader::new(&train, 128, aug, 1, tch::Device::Cpu).unwrap();
    let t = std::time::Instant::now();
    for s in 0..200 {
        let b = l.train_batch(s).unwrap();
        assert_eq!(b.images.size(), [128, 1, 28, 28]);
    }
    let ips = 200.0 * 128.0 / t.elapsed().as_secs_f64();
    eprintln!("loader: {ips:.0} images/s (crop + flip, one thread)");
    assert!(ips > 10_000.0, "{ips:.0} images/s");
}

#[cfg(feature = "train")]
#[test]
fn libtorch_free_input_scaling_is_bit_identical_to_the_loaders() {
    // Two 3-channel images of odd size, then every pixel value 0..=255.
    let shape = Shape::new(3, 5, 7);
    let pixels: Vec<u8> = (0..2 * shape.numel())
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let want = normalize_u8(&pixels, 2, shape, tch::Device::Cpu).expect("tensor");
    let want: Vec<f32> = Vec::try_from(want.contiguous().view([-1])).expect("values");
    let got = normalized_nchw(&pixels, 2, shape);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    let all: Vec<u8> = (0..=255).collect();
    let one = Shape::new(1, 16, 16);
    let want = normalize_u8(&all, 1, one, tch::Device::Cpu).expect("tensor");
    let want: Vec<f32> = Vec::try_from(want.contiguous().view([-1])).expect("values");
    assert_eq!(bits(&normalized_nchw(&all, 1, one)), bits(&want));
}
