/* Provenance attributes of a result cube: what ran, with what, where. No
 * timestamps, so identical results give identical bytes. */
#ifndef KG_COORDINATOR_PROVENANCE_H
#define KG_COORDINATOR_PROVENANCE_H

#include "io/cube.h"
#include "io/sweep_config.h"

int kg_provenance_attach(kg_cube *cube, const kg_sweep *sweep, int world_size, int argc, char **argv);

#endif
