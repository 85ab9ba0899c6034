use super::*;
use crate::space::Space;

fn space() -> Space {
    Space::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/spaces/fmnist-small.yaml"
    ))
    .unwrap()
}

#[test]
fn the_stem_and_head_cost_what_their_layers_hold() {
    let s = space();
    // Stem: 3×3 conv 1 → 16 on 28×28 (stride 1): input 784 + output 12 544
    // bytes alive; 144 weights + 12 bytes for each of 16 channels.
    let stem = block_footprint(&s.stem_block()).unwrap();
    assert_eq!(
        stem,
        Footprint {
            sram_bytes: 784 + 16 * 784,
            flash_bytes: 9 * 16 + 12 * 16
        }
    );
    // Head: 1×1 conv 96 → 256 on 4×4, pool, 256 → 10: the conv's input and
    // output are the largest pair alive; the classifier has an i32 bias per
    // class and one requantisation (8 bytes) for all.
    let head = block_footprint(&s.head_block()).unwrap();
    assert_eq!(
        head,
        Footprint {
            sram_bytes: 96 * 16 + 256 * 16,
            flash_bytes: 96 * 256 + 12 * 256 + 256 * 10 + 4 * 10 + 8
        }
    );
}

#[test]
fn an_mbconv_block_costs_what_the_int8_kernels_need_to_run_it() {
    // The footprint must be enough for the firmware's kernels to run the
    // block in one buffer, and not a byte more.
    let key: BlockKey = "mbconv:k5e6:in24x14x14:out40:s2".parse().unwrap();
    let f = block_footprint(&key).unwrap();
    let shape = BlockShape {
        in_c: 24,
        out_c: 40,
        expand: 6,
        kernel: 5,
        stride: 2,
        h: 14,
        w: 14,
    };
    let block = padnas_int8::RandomBlock::new(shape, 7).unwrap();
    let mut arena = vec![0i8; f.sram_bytes as usize];
    padnas_int8::run_block_in_arena(&shape, &block.params(), &mut arena).unwrap();
    arena.pop();
    assert!(padnas_int8::run_block_in_arena(&shape, &block.params(), &mut arena).is_err());
    // Flash: 24·144 expand + 25·144 depthwise + 144·40 project weights, and
    // 12 bytes per output channel of each convolution.
    assert_eq!(
        f.flash_bytes,
        (24 * 144 + 25 * 144 + 144 * 40 + 12 * (144 + 144 + 40)) as u64
    );
}

#[test]
fn the_precomputed_model_agrees_with_the_blocks_of_every_architecture() {
    let s = space();
    let model = MemoryModel::new(&s).unwrap();
    for seed in 0..200 {
        let arch = s.sample_seeded(seed);
        let genome = s.arch_indices(&arch).unwrap();
        let blocks = s.arch_blocks(&arch).unwrap();
        let each: Vec<Footprint> = blocks.iter().map(|b| block_footprint(b).unwrap()).collect();
        let expected = Footprint {
            sram_bytes: each.iter().map(|f| f.sram_bytes).max().unwrap(),
            flash_bytes: each.iter().map(|f| f.flash_bytes).sum(),
        };
        assert_eq!(model.footprint(&genome), expected, "{arch:?}");
    }
}

#[test]
fn a_larger_expansion_costs_more_and_a_limit_can_refuse_it() {
    let small: BlockKey = "mbconv:k3e3:in24x14x14:out24:s1".parse().unwrap();
    let large: BlockKey = "mbconv:k3e6:in24x14x14:out24:s1".parse().unwrap();
    let (a, b) = (
        block_footprint(&small).unwrap(),
        block_footprint(&large).unwrap(),
    );
    assert!(b.sram_bytes > a.sram_bytes && b.flash_bytes > a.flash_bytes);
    let limit = MemoryLimit {
        sram_bytes: a.sram_bytes,
        flash_bytes: u64::MAX,
    };
    assert!(a.fits(&limit));
    assert!(!b.fits(&limit));
}

#[test]
fn the_microcontroller_space_fits_its_boards_and_the_limit_bites_on_part_of_it() {
    let s = Space::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/spaces/mcu-small.yaml"
    ))
    .unwrap();
    let model = MemoryModel::new(&s).unwrap();
    let target = crate::target::Target::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../targets/stm32f746-disco.yaml"
    )))
    .unwrap();
    let limit = MemoryLimit::of_target(&target.memory.unwrap());
    let footprints: Vec<Footprint> = (0..500)
        .map(|seed| model.footprint(&s.arch_indices(&s.sample_seeded(seed)).unwrap()))
        .collect();
    // Every network of the space fits a real board's memory ...
    assert!(footprints.iter().all(|f| f.fits(&limit)), "{limit:?}");
    // ... and networks differ enough that a tighter limit (half the largest
    // flash) admits some and refuses others.
    let max_flash = footprints.iter().map(|f| f.flash_bytes).max().unwrap();
    let tight = MemoryLimit {
        sram_bytes: limit.sram_bytes,
        flash_bytes: max_flash / 2,
    };
    let fit = footprints.iter().filter(|f| f.fits(&tight)).count();
    assert!(
        fit > 0 && fit < footprints.len(),
        "{fit} of {} fit {tight:?}",
        footprints.len()
    );
}
