"""Huawei Cloud ModelArts: spec, IAM login, AK/SK signing and the provider."""
