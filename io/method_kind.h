/* The compression methods a grid cell can apply. One definition shared by
 * sweep configs (io/sweep_config.h) and the compressors (compress/), so a
 * file that includes both sees one enum. */
#ifndef KG_IO_METHOD_KIND_H
#define KG_IO_METHOD_KIND_H

typedef enum kg_method_kind {
  KG_METHOD_DENSE = 0, /* the uncompressed baseline; implied in every sweep */
  KG_METHOD_MAGNITUDE,
  KG_METHOD_WANDA,
  KG_METHOD_SPARSEGPT,
  KG_METHOD_OWL_WANDA,
  KG_METHOD_OWL_SPARSEGPT,
  KG_METHOD_RTN,  /* a sweep's `quantization` entry */
  KG_METHOD_GPTQ, /* a sweep's `quantization` entry */
  KG_METHOD_COUNT
} kg_method_kind;

#endif
