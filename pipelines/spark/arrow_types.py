"""Spark types from the Arrow schemas in ``dedup.contracts.schemas`` (declared once, there)."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import types as T


def spark_type(arrow: pa.DataType) -> T.DataType:
    if pa.types.is_string(arrow):
        return T.StringType()
    if pa.types.is_int64(arrow):
        return T.LongType()
    if pa.types.is_int32(arrow):
        return T.IntegerType()
    if pa.types.is_boolean(arrow):
        return T.BooleanType()
    if pa.types.is_float32(arrow):
        return T.FloatType()
    if pa.types.is_float64(arrow):
        return T.DoubleType()
    if pa.types.is_binary(arrow):
        return T.BinaryType()
    if pa.types.is_timestamp(arrow):
        return T.TimestampType()
    if pa.types.is_date32(arrow):
        return T.DateType()
    if pa.types.is_list(arrow):
        return T.ArrayType(spark_type(arrow.value_type), containsNull=arrow.value_field.nullable)
    if pa.types.is_struct(arrow):
        return T.StructType([T.StructField(f.name, spark_type(f.type), f.nullable) for f in arrow])
    raise TypeError(f"no Spark type for Arrow type {arrow}")


def spark_schema(schema: pa.Schema) -> T.StructType:
    return T.StructType([T.StructField(f.name, spark_type(f.type), f.nullable) for f in schema])
