"""OpenVINO: the IR writer, NNCF's INT8 quantizer, and the OpenVINO runner."""
