# The physics modules behind include/tradeflow/physics.h (compiled into the core library;
# physics/ is on its private include path for physics-impl.h).
set(TF_PHYSICS_SOURCES
  physics/physics.c
  physics/mcmc.c
  physics/molecular/quad.c
  physics/molecular/wells.c
  physics/molecular/gmm.c
  physics/molecular/mueller_brown.c
  physics/molecular/particles.c
  physics/lattice/phi4.c
  physics/lattice/fourier.c
  physics/lattice/hmc.c
  physics/lattice/measure.c)
