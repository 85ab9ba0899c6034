//! Raw form to [`Space`]: every rule of a space, each error naming the file
//! and the key path of the culprit (`stages[2].ops[1]`).

use super::{Activation, Head, Layer, Op, RawSpace, Shape, Space, SpaceError, Stage, Stem};

pub(super) fn validate(raw: RawSpace, origin: &str) -> Result<Space, SpaceError> {
    let invalid = |key: String, message: String| SpaceError::Invalid {
        origin: origin.to_string(),
        key,
        message,
    };
    let positive = |key: &str, v: usize| {
        if v == 0 {
            Err(invalid(key.to_string(), "must be ≥ 1".to_string()))
        } else {
            Ok(())
        }
    };
    let stride_ok = |key: String, v: usize| {
        if v == 1 || v == 2 {
            Ok(())
        } else {
            Err(invalid(key, format!("must be 1 or 2, got {v}")))
        }
    };

    positive("input.channels", raw.input.channels)?;
    positive("input.height", raw.input.height)?;
    positive("input.width", raw.input.width)?;
    positive("num_classes", raw.num_classes)?;
    if raw.stem.kernel.is_multiple_of(2) {
        return Err(invalid(
            "stem.kernel".into(),
            format!("must be odd, got {}", raw.stem.kernel),
        ));
    }
    positive("stem.channels", raw.stem.channels)?;
    stride_ok("stem.stride".into(), raw.stem.stride)?;
    positive("head.channels", raw.head.channels)?;
    if raw.stages.is_empty() {
        return Err(invalid(
            "stages".into(),
            "at least one stage is needed".into(),
        ));
    }

    let input = Shape::new(raw.input.channels, raw.input.height, raw.input.width);
    let stem = Stem {
        kernel: raw.stem.kernel,
        channels: raw.stem.channels,
        stride: raw.stem.stride,
        activation: raw.stem.activation.unwrap_or(Activation::Relu6),
    };
    let mut shape = input.after_conv(stem.channels, stem.stride);
    let mut stages = Vec::with_capacity(raw.stages.len());
    let mut layers = Vec::new();

    for (si, st) in raw.stages.into_iter().enumerate() {
        let at = |k: &str| format!("stages[{si}].{k}");
        positive(&at("channels"), st.channels)?;
        stride_ok(at("stride"), st.stride)?;

        // Each layer's candidates, with the key they came from for errors.
        let lists: Vec<(String, Vec<String>)> = if let Some(per_layer) = st.layers {
            if st.first_ops.is_some() || st.ops.is_some() {
                return Err(invalid(
                    at("layers"),
                    "cannot be combined with first_ops/ops".into(),
                ));
            }
            if let Some(n) = st.num_layers
                && n != per_layer.len()
            {
                return Err(invalid(
                    at("layers"),
                    format!("has {} entries but num_layers is {n}", per_layer.len()),
                ));
            }
            if per_layer.is_empty() {
                return Err(invalid(
                    at("layers"),
                    "a stage needs at least one layer".into(),
                ));
            }
            per_layer
                .into_iter()
                .enumerate()
                .map(|(i, ops)| (at(&format!("layers[{i}]")), ops))
                .collect()
        } else {
            let n = st.num_layers.ok_or_else(|| {
                invalid(
                    format!("stages[{si}]"),
                    "missing num_layers (or layers)".into(),
                )
            })?;
            positive(&at("num_layers"), n)?;
            let first = match (st.first_ops, &st.ops) {
                (Some(f), _) => (at("first_ops"), f),
                (None, Some(o)) => (at("ops"), o.clone()),
                (None, None) => {
                    return Err(invalid(
                        format!("stages[{si}]"),
                        "missing first_ops (or ops)".into(),
                    ));
                }
            };
            let mut lists = vec![first];
            match (n, st.ops) {
                (1, Some(_)) if lists[0].0 == at("first_ops") => {
                    return Err(invalid(
                        at("ops"),
                        "unused: the stage has a single layer".into(),
                    ));
                }
                (1, _) => {}
                (_, Some(o)) => lists.extend((1..n).map(|_| (at("ops"), o.clone()))),
                (_, None) => {
                    return Err(invalid(
                        format!("stages[{si}]"),
                        format!("missing ops for layers 1..{n}"),
                    ));
                }
            }
            lists
        };

        let mut stage_layers = Vec::with_capacity(lists.len());
        for (position, (key, tokens)) in lists.into_iter().enumerate() {
            let ops = tokens
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    t.parse::<Op>()
                        .map_err(|e| invalid(format!("{key}[{j}]"), e.to_string()))
                })
                .collect::<Result<Vec<Op>, _>>()?;
            let stride = if position == 0 { st.stride } else { 1 };
            let layer = Layer {
                index: layers.len(),
                stage: si,
                position,
                input: shape,
                out_channels: st.channels,
                stride,
                ops,
            };
            check_layer_ops(&layer, &key).map_err(|(k, m)| invalid(k, m))?;
            shape = layer.output();
            stage_layers.push(layer.ops.clone());
            layers.push(layer);
        }
        stages.push(Stage {
            channels: st.channels,
            stride: st.stride,
            layers: stage_layers,
        });
    }

    Ok(Space {
        name: raw.name,
        input,
        num_classes: raw.num_classes,
        stem,
        stages,
        head: Head {
            channels: raw.head.channels,
            activation: raw.head.activation.unwrap_or(Activation::Relu6),
        },
        layers,
    })
}

/// Checks one layer's candidates; the error carries the key of the culprit.
fn check_layer_ops(layer: &Layer, key: &str) -> Result<(), (String, String)> {
    if layer.ops.is_empty() {
        return Err((key.to_string(), "a layer needs at least one op".into()));
    }
    for (j, op) in layer.ops.iter().enumerate() {
        let item = format!("{key}[{j}]");
        op.check().map_err(|e| (item.clone(), e.to_string()))?;
        if layer.ops[..j].contains(op) {
            return Err((item, format!("duplicate op {op}")));
        }
        if op.is_identity() {
            let why = if layer.position == 0 {
                Some("the first layer of a stage".to_string())
            } else if !layer.keeps_shape() {
                Some(format!(
                    "a layer that changes shape ({} → {} channels, stride {})",
                    layer.input.channels, layer.out_channels, layer.stride
                ))
            } else {
                None
            };
            if let Some(why) = why {
                // The first layer falls back to `ops` when `first_ops` is absent.
                let hint = if layer.position == 0 && key.ends_with(".ops") {
                    " (without first_ops, the first layer takes ops: give first_ops)"
                } else {
                    ""
                };
                return Err((item, format!("identity is not allowed in {why}{hint}")));
            }
        }
    }
    Ok(())
}
