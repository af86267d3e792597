/* Sweep configs: the parsed struct of a config that uses every section
 * (tests/data/configs/good_full.cfg), its cell expansion counted by hand from
 * the config, and the error paths of kg_sweep_load. */
#include <string.h>
#include <unistd.h>

#include "io/error.h"
#include "io/sweep_config.h"
#include "kgtest.h"

static const kg_sweep_method *method(const kg_sweep *sw, const char *label) {
  for (size_t i = 0; i < sw->n_methods; i++)
    if (!strcmp(sw->methods[i].label, label)) return &sw->methods[i];
  return NULL;
}

static void check_struct(const kg_sweep *sw) {
  CHECK_STR(sw->name, "full");
  CHECK_STR(sw->path, "good_full.cfg");
  CHECK(sw->text && strstr(sw->text, "name = \"full\";") && sw->text_len == strlen(sw->text));

  CHECK(sw->n_models == 2);
  CHECK_STR(sw->models[0].name, "llama2-7b-shape");
  CHECK(sw->models[0].source == KG_MODEL_SYNTHETIC);
  CHECK_STR(sw->models[0].synthetic, "llama-2-7b");
  CHECK(sw->models[0].seed == 1 && sw->models[0].dtype == KG_DT_BF16);
  CHECK(sw->models[0].shape_known && sw->models[0].shape.max_seq_len == 4096 && sw->models[0].shape.n_layers == 32);
  /* LLaMA-2-7B: 6,738,415,616 parameters (the published size) */
  CHECK(sw->models[0].n_params == 6738415616LL);
  CHECK(sw->models[1].dtype == KG_DT_F32 && sw->models[1].seed == 0);
  CHECK(sw->models[0].line == 6 && sw->models[1].line == 7);

  CHECK(sw->n_methods == 8);
  CHECK(sw->methods[0].kind == KG_METHOD_DENSE && !sw->methods[0].uses_calibration);
  const kg_sweep_method *m = method(sw, "magnitude");
  CHECK(m && m->kind == KG_METHOD_MAGNITUDE && !m->uses_calibration);
  m = method(sw, "owl-sparsegpt");
  CHECK(m && m->kind == KG_METHOD_OWL_SPARSEGPT && m->uses_calibration && !m->is_quantization);
  m = method(sw, "rtn-w4");
  CHECK(m && m->kind == KG_METHOD_RTN && m->is_quantization && !m->uses_calibration && m->bits == 4 &&
        m->group_size == -1 && !m->sym && !m->act_order);
  m = method(sw, "gptq-w4g128-sym-ao");
  CHECK(m && m->kind == KG_METHOD_GPTQ && m->uses_calibration && m->group_size == 128 && m->sym && m->act_order);

  CHECK(sw->n_sparsities == 4);
  CHECK(sw->sparsities[0].ratio == 0.5 && sw->sparsities[0].m == 0);
  CHECK_STR(sw->sparsities[1].label, "0.6");
  CHECK(sw->sparsities[2].n == 2 && sw->sparsities[2].m == 4 && sw->sparsities[2].ratio == 0.5);
  CHECK(sw->sparsities[3].n == 4 && sw->sparsities[3].m == 8 && sw->sparsities[3].ratio == 0.5);
  CHECK_STR(sw->sparsities[3].label, "4:8");

  CHECK(sw->n_calibs == 5);
  CHECK(sw->calibs[0].kind == KG_CALIB_C4 && sw->calibs[0].nsamples == 128 && sw->calibs[0].seqlen == 2048);
  CHECK(sw->calibs[1].kind == KG_CALIB_WIKITEXT2 && sw->calibs[1].sampling == KG_SAMPLING_SEQUENTIAL &&
        sw->calibs[1].seed == 3);
  CHECK(sw->calibs[2].kind == KG_CALIB_TASK);
  CHECK_STR(sw->calibs[2].arg, "boolq");
  CHECK(sw->calibs[3].kind == KG_CALIB_SELF && sw->calibs[3].sampling == KG_SAMPLING_RANDOM);
  CHECK(sw->calibs[4].kind == KG_CALIB_FILE);
  CHECK_STR(sw->calibs[4].arg, "calib_text.jsonl");
  CHECK_STR(sw->calibs[4].source, "file:calib_text.jsonl");

  CHECK(sw->pruning.true_sequential && sw->pruning.propagate == KG_PROPAGATE_DENSE);
  CHECK_NEAR(sw->pruning.percdamp, 0.05, 0);
  CHECK(sw->pruning.blocksize == 64 && sw->pruning.wanda_use_variant);
  CHECK_NEAR(sw->pruning.owl_m, 7.0, 0);
  CHECK_NEAR(sw->pruning.owl_lambda, 0.1, 0);
  CHECK(sw->pruning.recon_samples == 0);

  CHECK(sw->n_ppl == 2 && sw->ppl[0].kind == KG_TEXT_WIKITEXT2 && sw->ppl[0].max_windows == 0);
  CHECK(sw->ppl[1].kind == KG_TEXT_C4 && sw->ppl[1].seqlen == 1024 && sw->ppl[1].max_windows == 40);
  CHECK(sw->js.enabled && sw->js.seqlen == 512 && sw->js.max_windows == 4 && sw->js.n_tasks == 2);
  CHECK_STR(sw->js.tasks[1], "piqa");
  CHECK(sw->n_tasks == 3);
  CHECK(sw->tasks[0].limit == 200 && sw->tasks[0].seed == 1234 && sw->tasks[0].mode == KG_TASK_MODE_DEFAULT);
  CHECK(sw->tasks[1].mode == KG_TASK_MODE_LOGLIK && sw->tasks[1].num_fewshot == 5);
  CHECK(sw->tasks[2].num_fewshot == 0 && sw->tasks[2].seed == 1234);

  CHECK(sw->grid.team_size == 2 && sw->grid.retries == 3 && sw->grid.backend == KG_BACKEND_CUDA);
  CHECK(sw->grid.threads == 4 && sw->grid.team_size_line == 29);
  CHECK_NEAR(sw->grid.gpu_memory_gb, 20.5, 0);
  CHECK_STR(sw->grid.output, "out/full.h5");
  CHECK_STR(sw->grid.log_dir, "out/full.logs");
}

static void check_cells(const kg_sweep *sw) {
  const kg_sweep_axes *d = kg_sweep_dims(sw);
  CHECK(d->dim[KG_DIM_MODEL].len == 2 && d->dim[KG_DIM_METHOD].len == 8 && d->dim[KG_DIM_SPARSITY].len == 3 &&
        d->dim[KG_DIM_STRUCTURE].len == 3 && d->dim[KG_DIM_CALIBRATION].len == 5);
  CHECK_STR(d->dim[KG_DIM_SPARSITY].name, "sparsity");
  CHECK(d->dim[KG_DIM_SPARSITY].values[0] == 0.0 && d->dim[KG_DIM_SPARSITY].values[1] == 0.5 &&
        d->dim[KG_DIM_SPARSITY].values[2] == 0.6);
  CHECK_STR(d->dim[KG_DIM_STRUCTURE].labels[2], "4:8");
  CHECK_STR(d->dim[KG_DIM_METHOD].labels[7], "gptq-w4g128-sym-ao");

  kg_sweep_cells *cells = NULL;
  CHECK_OK(kg_sweep_expand(sw, &cells));
  if (!cells) return;
  /* Slots per method, read off the config: dense and each quantization at
   * (0, unstructured); magnitude, wanda, sparsegpt at 0.5, 0.6, 2:4, 4:8;
   * OWL at the two unstructured sparsities only. */
  const size_t n_calib = 5, n_models = 2;
  const size_t slots_without_calib = 1 /* dense */ + 4 /* magnitude */ + 1 /* rtn */;
  const size_t slots_with_calib = 4 + 4 + 2 + 2 + 1; /* wanda, sparsegpt, owl x2, gptq */
  size_t computed = n_models * (slots_without_calib + slots_with_calib * n_calib);
  size_t replicas = n_models * slots_without_calib * (n_calib - 1);
  size_t cube = 2 * 8 * 3 * 3 * 5;
  CHECK_MSG(cells->n_computed == computed, "%zu computed", cells->n_computed);
  CHECK_MSG(cells->n_replicas == replicas, "%zu replicas", cells->n_replicas);
  CHECK(cells->cube_size == cube && cells->n_na == cube - computed - replicas);
  CHECK(cells->n_slots == 8 * 3 * 3 && cells->n_slots_na == 8 * 9 - (slots_without_calib + slots_with_calib));

  long w = kg_sweep_find_cell(cells, "smol|wanda|0.5|2:4|boolq");
  CHECK(w >= 0 && cells->cells[w].replica_of == -1 && cells->cells[w].sparsity->m == 4);
  long r = kg_sweep_find_cell(cells, "smol|magnitude|0.6|unstructured|self");
  long c = kg_sweep_find_cell(cells, "smol|magnitude|0.6|unstructured|c4");
  CHECK(r >= 0 && c >= 0 && cells->cells[r].replica_of == c && cells->cells[c].replica_of == -1);
  long dense = kg_sweep_find_cell(cells, "llama2-7b-shape|dense|0|unstructured|c4");
  CHECK(dense >= 0 && cells->cells[dense].sparsity == NULL && cells->cells[dense].method->kind == KG_METHOD_DENSE);
  CHECK(kg_sweep_find_cell(cells, "smol|owl-wanda|0.5|2:4|c4") < 0);
  CHECK(kg_sweep_find_cell(cells, "smol|wanda|0.6|2:4|c4") < 0);
  CHECK(kg_sweep_slot_na(sw, cells, 0, 1, 0));  /* dense at 0.5 */
  CHECK(!kg_sweep_slot_na(sw, cells, 0, 0, 0)); /* dense at 0 */
  CHECK(kg_sweep_slot_na(sw, cells, 2, 2, 1));  /* wanda at 0.6, 2:4 */
  CHECK(!kg_sweep_slot_na(sw, cells, 2, 1, 2)); /* wanda at 0.5, 4:8 */
  /* cube order: model outermost, calibration innermost */
  for (size_t i = 1; i < cells->n_cells; i++) {
    const int *a = cells->cells[i - 1].index, *b = cells->cells[i].index;
    int less = 0;
    for (int k = 0; k < KG_SWEEP_NDIMS && !less; k++) {
      if (a[k] < b[k]) less = 1;
      else if (a[k] > b[k]) break;
    }
    CHECK_MSG(less, "cell %zu out of order", i);
  }
  kg_sweep_cells_free(cells);
}

static void check_errors(void) {
  kg_diag_list diags;
  kg_diag_list_init(&diags);
  kg_sweep *sw = (kg_sweep *)1;
  CHECK(kg_sweep_load("no-such-config.cfg", &sw, &diags) == KG_ERR_IO && sw == NULL);
  CHECK(diags.n_errors == 1 && diags.items[0].line == 0);
  kg_diag_list_free(&diags);

  kg_diag_list_init(&diags);
  CHECK(kg_sweep_load("bad_many.cfg", &sw, &diags) == KG_ERR_FORMAT && sw == NULL);
  CHECK(diags.n_errors >= 8 && diags.n_warnings == 0);
  CHECK(strstr(kg_error_message(), "bad_many.cfg") != NULL);
  for (size_t i = 1; i < diags.count; i++) CHECK(diags.items[i - 1].line <= diags.items[i].line);
  kg_diag_list_free(&diags);

  /* NULL diags: the code alone */
  CHECK(kg_sweep_load("bad_syntax.cfg", &sw, NULL) == KG_ERR_FORMAT && sw == NULL);

  kg_sweep_options opts = {.missing_models_are_warnings = 1};
  kg_diag_list_init(&diags);
  CHECK_OK(kg_sweep_load_opts("bad_missing_model.cfg", &opts, &sw, &diags));
  CHECK(sw && diags.n_errors == 0 && diags.n_warnings == 1);
  if (sw) {
    CHECK(sw->models[0].source == KG_MODEL_PATH && !sw->models[0].shape_known && sw->models[0].n_params == 0);
    kg_diag_list d2;
    kg_diag_list_init(&d2);
    CHECK_OK(kg_sweep_check_world(sw, 1, &d2));
    CHECK(d2.count == 0);
    kg_diag_list_free(&d2);
  }
  kg_sweep_free(sw);
  kg_diag_list_free(&diags);

  /* provenance keeps every file read, @includes named from the working directory */
  kg_diag_list_init(&diags);
  CHECK_OK(kg_sweep_load("../../../configs/llm-kick-synthetic.cfg", &sw, &diags));
  if (sw) {
    CHECK(sw->n_sources == 2);
    CHECK_STR(sw->source_paths[0], "../../../configs/llm-kick-synthetic.cfg");
    CHECK_STR(sw->source_paths[1], "../../../configs/studies/llm-kick.inc");
    CHECK(sw->source_texts[0] == sw->text && strstr(sw->source_texts[1], "quantization = (") != NULL);
    CHECK(sw->n_methods == 1 + 3 + 6 && sw->n_sparsities == 7);
  }
  kg_sweep_free(sw);
  kg_diag_list_free(&diags);
}

int main(void) {
  if (chdir(KG_SOURCE_DIR "/tests/data/configs") != 0) {
    fprintf(stderr, "cannot enter tests/data/configs\n");
    return 1;
  }
  kg_diag_list diags;
  kg_diag_list_init(&diags);
  kg_sweep *sw = NULL;
  CHECK_OK(kg_sweep_load("good_full.cfg", &sw, &diags));
  CHECK(diags.n_errors == 0 && diags.n_warnings == 2); /* the two N:M patterns have no OWL cells */
  if (sw) {
    check_struct(sw);
    check_cells(sw);
    kg_diag_list world;
    kg_diag_list_init(&world);
    CHECK(kg_sweep_check_world(sw, 1, &world) == KG_ERR_ARG && world.n_errors == 1 && world.items[0].line == 29);
    CHECK_OK(kg_sweep_check_world(sw, 2, &world));
    kg_diag_list_free(&world);
  }
  kg_sweep_free(sw);
  kg_diag_list_free(&diags);
  check_errors();
  return kgtest_finish("test_sweep_config");
}
