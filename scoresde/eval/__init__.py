"""Evaluation: sample-quality metrics (`metrics`), the FID Inception network (`inception`), the
digits feature classifier (`features`), pictures (`plotting`) and the sampler benchmark (`benchmark`)."""
