/**
 * Instances of a `Schema.Class` built from values already known to be valid (rows the
 * backend checked by hand), without running the class constructor.
 *
 * The constructor of a `Schema.Class` copies its argument, fills in field defaults and
 * then assigns the fields to the new instance (with `{ disableValidation: true }` it skips
 * only the validation). For a value that already has every field, the result is an
 * instance of the class's prototype with those fields assigned, which is what this makes
 * directly: `list` builds two instances per volume, and the constructor's copying and
 * default merging were ≈15% of a `list` of 10,000 volumes (docs/benchmarks.md).
 * `test/trustedClass.test.ts` checks that the two give equal, equally encoded values.
 */

/**
 * The fields of an instance, optional exactly where the instance type has them optional:
 * a field with a constructor default is required here, so none is left out.
 */
export type Fields<A> = { readonly [K in keyof A]: A[K] }

/** A value whose fields may be set (while it is being built). */
export type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/** An instance of `Class` whose fields are `fields` (no copy, no default, no validation). */
export const makeTrusted = <A extends object>(
  Class: abstract new(...args: ReadonlyArray<never>) => A,
  fields: Fields<A>
): A => Object.assign(Object.create(Class.prototype) as A, fields)
