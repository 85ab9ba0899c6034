//! Small builders for the ONNX protobuf messages the graph needs.

use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

pub(super) fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

pub(super) fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub(super) fn value_info(name: &str, dims: Vec<DimValue>) -> pb::ValueInfoProto {
    let shape = pb::TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|v| pb::tensor_shape_proto::Dimension {
                denotation: String::new(),
                value: Some(v),
            })
            .collect(),
    };
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(shape),
            })),
        }),
        ..Default::default()
    }
}
