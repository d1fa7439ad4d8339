//! Tensors on the wire ({shape, dtype, little-endian bytes}) and in memory, and the error every invalid
//! input becomes: [`OpError`], which names the offending field and turns into `INVALID_ARGUMENT`.

use std::fmt;

use crate::pb;
use crate::simd::Real;

/// Invalid input: `field` is the request field at fault (`"logits.shape"`), `message` says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    pub field: String,
    pub message: String,
}

impl OpError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        OpError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for OpError {}

impl From<OpError> for tonic::Status {
    fn from(err: OpError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T> Tensor<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn from_vec(data: Vec<T>) -> Self {
        Tensor { shape: vec![data.len()], data }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Size of the last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// The shape without its last dimension.
    pub fn leading_shape(&self) -> &[usize] {
        &self.shape[..self.shape.len().saturating_sub(1)]
    }
}

/// The dtype of a wire tensor, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireDType {
    F32,
    F64,
    I64,
}

impl WireDType {
    pub fn name(self) -> &'static str {
        match self {
            WireDType::F32 => "float32",
            WireDType::F64 => "float64",
            WireDType::I64 => "int64",
        }
    }

    fn itemsize(self) -> usize {
        match self {
            WireDType::F32 => 4,
            WireDType::F64 => 8,
            WireDType::I64 => 8,
        }
    }
}

/// The float type of a request, taken from its first tensor; every other float tensor must match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatKind {
    F32,
    F64,
}

/// A tensor field that must be present.
pub fn required<'a>(field: &str, tensor: &'a Option<pb::Tensor>) -> OpResult<&'a pb::Tensor> {
    tensor.as_ref().ok_or_else(|| OpError::new(field, "required"))
}

/// Checks dtype, shape and byte length; returns the dtype and the shape.
fn check_layout(field: &str, tensor: &pb::Tensor) -> OpResult<(WireDType, Vec<usize>)> {
    let dtype = match pb::Dtype::try_from(tensor.dtype) {
        Ok(pb::Dtype::Float32) => WireDType::F32,
        Ok(pb::Dtype::Float64) => WireDType::F64,
        Ok(pb::Dtype::Int64) => WireDType::I64,
        Ok(pb::Dtype::Unspecified) => return Err(OpError::new(format!("{field}.dtype"), "must be set")),
        Err(_) => {
            return Err(OpError::new(format!("{field}.dtype"), format!("unknown dtype {}", tensor.dtype)));
        }
    };
    let mut shape = Vec::with_capacity(tensor.shape.len());
    let mut numel: usize = 1;
    for &dim in &tensor.shape {
        let dim = usize::try_from(dim)
            .map_err(|_| OpError::new(format!("{field}.shape"), format!("dimension {dim} is too large")))?;
        numel = numel.checked_mul(dim).ok_or_else(|| {
            OpError::new(format!("{field}.shape"), format!("{:?} has too many elements", tensor.shape))
        })?;
        shape.push(dim);
    }
    if numel == 0 {
        return Err(OpError::new(field, format!("empty tensor (shape {:?})", tensor.shape)));
    }
    let expected = numel.checked_mul(dtype.itemsize()).ok_or_else(|| {
        OpError::new(format!("{field}.shape"), format!("{:?} has too many elements", tensor.shape))
    })?;
    if tensor.data.len() != expected {
        return Err(OpError::new(
            format!("{field}.data"),
            format!(
                "{} bytes do not match shape {:?} of {} ({expected} bytes)",
                tensor.data.len(),
                tensor.shape,
                dtype.name()
            ),
        ));
    }
    Ok((dtype, shape))
}

/// The float kind of a tensor field (the request's dtype when this is its first tensor).
pub fn float_kind(field: &str, tensor: &pb::Tensor) -> OpResult<FloatKind> {
    match pb::Dtype::try_from(tensor.dtype) {
        Ok(pb::Dtype::Float32) => Ok(FloatKind::F32),
        Ok(pb::Dtype::Float64) => Ok(FloatKind::F64),
        Ok(pb::Dtype::Int64) => {
            Err(OpError::new(format!("{field}.dtype"), "must be float32 or float64, got int64"))
        }
        Ok(pb::Dtype::Unspecified) => Err(OpError::new(format!("{field}.dtype"), "must be set")),
        Err(_) => Err(OpError::new(format!("{field}.dtype"), format!("unknown dtype {}", tensor.dtype))),
    }
}

/// Which non-finite values a float field may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Every element finite.
    Finite,
    /// NaN marks a missing value; infinities are still refused.
    NanAllowed,
}

/// Decodes a float tensor of the request's dtype `T`.
pub fn decode_float<T: Real>(field: &str, tensor: &pb::Tensor, values: Values) -> OpResult<Tensor<T>> {
    let (dtype, shape) = check_layout(field, tensor)?;
    let want = if T::BYTES == 4 { WireDType::F32 } else { WireDType::F64 };
    if dtype != want {
        return Err(OpError::new(
            format!("{field}.dtype"),
            format!("{} does not match the request's dtype {}", dtype.name(), want.name()),
        ));
    }
    let data: Vec<T> = tensor.data.chunks_exact(T::BYTES).map(T::from_le_slice).collect();
    let bad = match values {
        Values::Finite => data.iter().position(|x| !x.is_finite()),
        Values::NanAllowed => data.iter().position(|x| !x.is_finite() && !x.is_nan()),
    };
    if let Some(index) = bad {
        let what = if values == Values::Finite { "NaN or infinity" } else { "infinity" };
        return Err(OpError::new(field, format!("contains {what} (flat index {index})")));
    }
    Ok(Tensor { shape, data })
}

/// Decodes an optional float field.
pub fn decode_optional<T: Real>(
    field: &str,
    tensor: &Option<pb::Tensor>,
    values: Values,
) -> OpResult<Option<Tensor<T>>> {
    tensor.as_ref().map(|t| decode_float(field, t, values)).transpose()
}

/// Decodes an int64 tensor.
pub fn decode_i64(field: &str, tensor: &pb::Tensor) -> OpResult<Tensor<i64>> {
    let (dtype, shape) = check_layout(field, tensor)?;
    if dtype != WireDType::I64 {
        return Err(OpError::new(format!("{field}.dtype"), format!("must be int64, got {}", dtype.name())));
    }
    let data = tensor
        .data
        .chunks_exact(8)
        .map(|b| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(b);
            i64::from_le_bytes(raw)
        })
        .collect();
    Ok(Tensor { shape, data })
}

/// Encodes a float tensor for the wire.
pub fn encode<T: Real>(tensor: &Tensor<T>) -> pb::Tensor {
    let mut data = Vec::with_capacity(tensor.data.len() * T::BYTES);
    for &x in &tensor.data {
        x.extend_le(&mut data);
    }
    let dtype = if T::BYTES == 4 { pb::Dtype::Float32 } else { pb::Dtype::Float64 };
    pb::Tensor { shape: tensor.shape.iter().map(|&d| d as u64).collect(), dtype: dtype as i32, data }
}

/// Refuses a tensor whose shape is not `expected`, naming both.
pub fn expect_shape<T>(field: &str, tensor: &Tensor<T>, expected: &[usize], of: &str) -> OpResult<()> {
    if tensor.shape != expected {
        return Err(OpError::new(
            format!("{field}.shape"),
            format!("{:?} does not match {of} {:?}", tensor.shape, expected),
        ));
    }
    Ok(())
}

/// Refuses a tensor whose rank is not `rank`.
pub fn expect_rank<T>(field: &str, tensor: &Tensor<T>, rank: usize, meaning: &str) -> OpResult<()> {
    if tensor.shape.len() != rank {
        return Err(OpError::new(
            format!("{field}.shape"),
            format!("expected rank {rank} ({meaning}), got {:?}", tensor.shape),
        ));
    }
    Ok(())
}

/// A scalar parameter that must be finite.
pub fn finite_param(field: &str, value: f64) -> OpResult<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(OpError::new(field, format!("must be finite, got {value}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(shape: &[u64], dtype: pb::Dtype, data: Vec<u8>) -> pb::Tensor {
        pb::Tensor { shape: shape.to_vec(), dtype: dtype as i32, data }
    }

    #[test]
    fn round_trips_both_float_dtypes() {
        let t = Tensor::new(vec![2, 2], vec![1.5f32, -2.0, 0.25, 3.0]);
        let back: Tensor<f32> = decode_float("x", &encode(&t), Values::Finite).unwrap();
        assert_eq!(back, t);
        let t = Tensor::new(vec![3], vec![1e-300f64, -2.0, f64::MAX]);
        let back: Tensor<f64> = decode_float("x", &encode(&t), Values::Finite).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn refuses_bad_layouts_naming_the_field() {
        let short = wire(&[2, 3], pb::Dtype::Float32, vec![0; 20]);
        let err = decode_float::<f32>("logits", &short, Values::Finite).unwrap_err();
        assert_eq!(err.field, "logits.data");
        let empty = wire(&[0, 3], pb::Dtype::Float32, vec![]);
        assert_eq!(decode_float::<f32>("logits", &empty, Values::Finite).unwrap_err().field, "logits");
        let unknown = pb::Tensor { shape: vec![1], dtype: 42, data: vec![0; 4] };
        let err = decode_float::<f32>("logits", &unknown, Values::Finite).unwrap_err();
        assert_eq!(err.field, "logits.dtype");
        assert!(err.message.contains("42"));
        let huge = wire(&[u64::MAX, 4], pb::Dtype::Float32, vec![]);
        assert_eq!(decode_float::<f32>("x", &huge, Values::Finite).unwrap_err().field, "x.shape");
        let wrong = wire(&[1], pb::Dtype::Float64, vec![0; 8]);
        assert_eq!(decode_float::<f32>("mask", &wrong, Values::Finite).unwrap_err().field, "mask.dtype");
        let labels = wire(&[1], pb::Dtype::Float32, vec![0; 4]);
        assert_eq!(decode_i64("labels", &labels).unwrap_err().field, "labels.dtype");
    }

    #[test]
    fn refuses_non_finite_values_unless_nan_is_allowed() {
        let t = encode(&Tensor::from_vec(vec![1.0f64, f64::NAN]));
        assert!(decode_float::<f64>("r", &t, Values::Finite).is_err());
        assert!(decode_float::<f64>("r", &t, Values::NanAllowed).is_ok());
        let t = encode(&Tensor::from_vec(vec![f64::INFINITY]));
        assert!(decode_float::<f64>("r", &t, Values::NanAllowed).is_err());
    }
}
