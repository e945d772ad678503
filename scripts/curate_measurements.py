"""Build models/data/measurements.csv from ../shared/data/published_measurements.csv (one-off curation)."""
import re, sys
import pandas as pd

import pathlib

# usage: python scripts/curate_measurements.py [OUT_CSV]  (reads ../shared/data/published_measurements.csv)
_HERE = pathlib.Path(__file__).resolve()
SRC = str(next((p / 'shared/data/published_measurements.csv' for p in _HERE.parents
                if (p / 'shared/data/published_measurements.csv').exists()),
               _HERE.parents[2] / 'shared/data/published_measurements.csv'))
pub = pd.read_csv(SRC, dtype=str, keep_default_na=False)
rows = []

def add(r, **kw):
    base = dict(reference=r['source'], machine=r['machine'], folio_kb='', n_folios='', batch_limit_pages='',
                copy_engine='', copy_threads='', target_cpus='', mapcount='', busy_prob='', access_rate_hz='',
                mode='', variant='', sd='', notes=r['notes'])
    base.update(kw)
    rows.append(base)

def sd_of(notes):
    m = re.search(r'sd ([0-9.]+)', notes)
    return float(m.group(1)) if m else None

GIB = 1 << 30
FOLIO = {'4K': 4, '16K': 16, '32K': 32, '64K': 64, '128K': 128, '256K': 256, '512K': 512, '1M': 1024, '2M': 2048}

for _, r in pub.iterrows():
    s, met, val, notes = r['source'], r['metric'], r['value'], r['notes']
    if s.startswith('Huang Ying reply to Zi Yan'):
        base = '(base kernel)' in met
        fn = met.replace('CPU cycles in ', '').split(' (')[0] if 'ptep' not in met else 'ptep_clear_flush (TLB flush)'
        if 'try_to_migrate_one' in met: fn = 'try_to_migrate_one (unmap+TLB)'
        add(r, source='huang-rfc-reply-2022-09', profile='xeon-8260l-2s', date='2022-09-22', trust='C',
            folio_kb=4, batch_limit_pages=1 if base else 512, copy_engine='cpu', copy_threads=1,
            variant=f"{fn}; {'unbatched base kernel' if base else 'batched'}; pmbench + migratepages",
            metric='cpu_cycles_fraction', value=float(val), unit='%',
            notes=('perf share of all cycles; CPU model not stated, mapped to the 2-socket Cascade Lake '
                   'profile (grade C for the mapping). ' + notes).strip())
    elif s.startswith('LKP/kernel test robot'):
        if 'flush_tlb_func' in met:
            add(r, source='lkp-flush-regression-2023-03', profile='xeon-8260l-2s', date='2023-03-20', trust='A',
                folio_kb=4, copy_engine='cpu', copy_threads=1,
                variant='flush_tlb_func; vm-scalability anon-cow-rand-mt; with 7e12beb8ca',
                metric='cpu_cycles_fraction', value=float(val), unit='%', notes=notes)
            add(r, source='lkp-flush-regression-2023-03', profile='xeon-8260l-2s', date='2023-03-20', trust='A',
                folio_kb=4, copy_engine='cpu', copy_threads=1,
                variant='flush_tlb_func; vm-scalability anon-cow-rand-mt; before 7e12beb8ca',
                metric='cpu_cycles_fraction', value=float(r['baseline_value']), unit='%',
                notes="baseline column of the report ('0.09 +1.2 1.32')")
        # vm-scalability score changes: workload scores, left out (MEASUREMENTS.md)
    elif s.startswith("Huang Ying 'mm,unmap"):
        if 'IPI' in met:
            add(r, source='huang-unmap-inaccessible-2023-04', profile='xeon-8260l-2s', date='2023-04-10', trust='C',
                folio_kb=4, copy_engine='cpu', copy_threads=1,
                variant='flush IPIs with vs without skipping batched flush for inaccessible PTEs (max)',
                metric='ipi_ratio', value=round(1 + float(val) / 100, 6), unit='1',
                notes='published as -44.3% (up to); stored as ratio 0.557; machine not specified, mapped to '
                      'the Cascade Lake profile. ' + notes)
    elif s.startswith('Zi Yan [RFC PATCH 00/25]'):
        if 'exchange' in met:
            continue  # exchange_pages (symmetric swap) is not migration: left out
        copy_only = 'migrate_page_copy()' in met
        mix = r['folio_mix']
        n, fkb = {'1 x 4KB': (1, 4), '512 x 4KB': (512, 4), '1 x 2MB THP': (1, 2048), '16 x 2MB THP': (16, 2048)}[mix]
        eng = r['copy_engine']
        th = 16 if 'IOAT' in r['copy_threads'] else int(r['copy_threads'])
        batched = 'batched' in met
        variant = ''
        batch = 1
        if batched:
            batch, variant = n * fkb // 4, 'concurrent copy of all folios (Zi Yan batching)'
        elif mix == '16 x 2MB THP':
            variant = 'one folio at a time'
        add(r, source='yan-rfc-2019-04', profile='xeon-e5-2650v3-2s', date='2019-04-03', trust='A',
            folio_kb=fkb, n_folios=n, batch_limit_pages=batch, copy_engine=eng, copy_threads=th,
            variant=variant, metric='copy_bytes_per_s' if copy_only else 'bytes_per_s', value=float(val), unit='GB/s',
            notes=('pre-batching kernel (~v5.0): batch_limit_pages 1 = per-folio flush'
                   + ('; concurrent copy of the 16 THPs expressed as one batch of all base pages' if batched else '')
                   + ('; copy-only (migrate_page_copy())' if copy_only else '; around migrate_pages()')
                   + ('; 16-channel Intel IOAT' if eng == 'dma' else '')))
    elif s.startswith('Zi Yan slides'):
        m = re.match(r'1024 x (\d+)(KB|MB)', r['folio_mix'])
        fkb = int(m.group(1)) * (1024 if m.group(2) == 'MB' else 1)
        grace = 'Grace' in r['machine']
        add(r, source='yan-slides-mt-2025', profile='grace-2s' if grace else 'xeon-e5-2650v3-2s', date='2025-03',
            trust='B', folio_kb=fkb, n_folios=1024, copy_engine='mt-cpu', copy_threads=int(r['copy_threads']),
            variant='multi-threaded vs single-thread copy (max, ~)', metric='throughput_ratio',
            value=round(1 + float(val) / 100, 6), unit='1',
            notes=(f"published as +{val}% (up to ~); stored as ratio; slide date not stated (date of the LSFMM/MM 2025 "
                   "thread that links it)" + ('' if grace else '; 2x E5-2650 v4 mapped to the E5-2650 v3 profile')
                   + '; ' + notes))
    elif s.startswith('Shivank Garg [RFC PATCH 0/5]'):
        if met == 'DMAengine net copy throughput':
            add(r, source='garg-rfc-dma-2024-06', profile='epyc-zen3-2s', date='2024-06-14', trust='B',
                copy_engine='dma', copy_threads=1, variant='DMAengine net copy', metric='copy_bytes_per_s',
                value=float(val), unit='GB/s', notes="'net throughput of 768MB/s'; transfer size not stated")
            continue
        m = re.match(r'workload (\d+)(KB|MB|GB)', r['folio_mix'])
        total_kb = int(m.group(1)) * {'KB': 1, 'MB': 1024, 'GB': 1024 * 1024}[m.group(2)]
        variant = met[met.index('[') + 1:-1]
        sd = sd_of(notes)
        eng = 'dma' if 'DMA' in variant else 'cpu'
        kw = dict(source='garg-rfc-dma-2024-06', profile='epyc-zen3-2s', date='2024-06-14', trust='A', folio_kb=4,
                  n_folios=total_kb // 4, batch_limit_pages=512, copy_engine=eng, copy_threads=1, variant=variant)
        if met.startswith('migrate_pages() cost') or met.startswith('folio_copy() cost'):
            cyc = float(val)
            add(r, **kw, metric='time_per_page_s' if met.startswith('migrate') else 'copy_time_per_page_s',
                value=f'{cyc / 2.0e9:.6g}', sd='' if sd is None else f'{sd / 2.0e9:.6g}', unit='s',
                notes=f'published as {val} CPU cycles per page (sd {sd}); converted at the stated 2 GHz clock; '
                      f'{total_kb // 1024 if total_kb >= 1024 else total_kb}{"MB" if total_kb >= 1024 else "KB"} of 4KB pages; Linux 6.8; remote->local promotion')
        else:
            add(r, **kw, metric='copy_fraction', value=float(val), sd='' if sd is None else sd, unit='1',
                notes='fraction of migrate_pages() time in folio_copy(); Linux 6.8')
    elif s.startswith('Shivank Garg [PATCH RFC V2'):
        # [PATCH RFC V2 9/9] "mm: adjust NR_MAX_BATCHED_MIGRATION for testing" sets it to HPAGE_PUD_NR
        # (262144 base pages with 4 KiB pages); the RFC V3 series carries the same patch.
        src = dict(source='garg-rfc-v2-2025-03', profile='epyc-zen3-2s', date='2025-03-19', trust='B',
                   batch_limit_pages=262144)
        sd = sd_of(notes)
        bnote = ('NR_MAX_BATCHED_MIGRATION = HPAGE_PUD_NR = 262144 pages for testing ([PATCH RFC V2 9/9] '
                 '"mm: adjust NR_MAX_BATCHED_MIGRATION for testing"); ')
        mix = r['folio_mix']
        if met == 'move_pages() migration throughput':
            fkb = FOLIO[re.match(r'uniform (\w+) folios', mix).group(1)]
            th = int(r['copy_threads'].split()[0])
            add(r, **src, folio_kb=fkb, n_folios=GIB // (fkb * 1024), copy_engine=r['copy_engine'], copy_threads=th,
                metric='bytes_per_s', value=float(val), sd='' if sd is None else sd, unit='GB/s',
                notes=bnote + f'1 GiB of uniform {fkb} KiB folios in one move_pages() call; ' + notes)
        elif met == 'move_pages() migration throughput vs folio count':
            n = int(mix.split()[0])
            add(r, **src, folio_kb=2048, n_folios=n, copy_engine=r['copy_engine'], copy_threads=int(r['copy_threads']),
                variant='folio-count sweep', metric='bytes_per_s', value=float(val), sd='' if sd is None else sd,
                unit='GB/s', notes=bnote + notes)
        else:
            spread = 'spread across CCDs' in met
            add(r, **src, folio_kb=2048, n_folios=512, copy_engine='mt-cpu', copy_threads=int(r['copy_threads']),
                variant='thread placement: ' + ('spread across CCDs' if spread else 'fill one CCD first'),
                metric='bytes_per_s', value=float(val), sd='' if sd is None else sd, unit='GB/s',
                notes=bnote + 'folio count not restated: 1 GiB of 2 MiB folios (table 1) assumed; ' + notes)
    elif s.startswith('Shivank Garg reply on [RFC PATCH v4') or s.startswith('Shivank Garg reply to Huang Ying'):
        v4 = 'v4' in s
        src = dict(source='garg-v4-2026-03' if v4 else 'garg-v5-2026-05', profile='epyc-zen3-2s',
                   date='2026-03-18' if v4 else '2026-05-08')
        sd = sd_of(notes)
        if 'speedup' in met:
            add(r, **src, trust='B', folio_kb=2048, n_folios=512, batch_limit_pages=512, copy_engine='dma',
                copy_threads=16, variant='DMA offload vs vanilla CPU copy', metric='throughput_ratio', value=6,
                unit='x', notes="stated '~6x for 2MB folios at 16 DMA channels' (matches V4)")
            continue
        fkb = FOLIO[re.match(r'uniform (\w+) folios', r['folio_mix']).group(1)]
        eng = r['copy_engine']
        th = int(r['copy_threads'].split()[0])
        vanilla = eng == 'cpu'
        add(r, **src, trust='A' if vanilla else 'B', folio_kb=fkb, n_folios=GIB // (fkb * 1024),
            batch_limit_pages=512, copy_engine=eng, copy_threads=th,
            variant='vanilla kernel' if vanilla else 'DMA offload (dcbm, PTDMA)',
            metric='bytes_per_s', value=float(val), sd='' if sd is None else sd, unit='GB/s',
            notes=('vanilla default batch limit; ' if vanilla else 'batch limit not stated (512 assumed); ')
            + f'1 GiB of uniform {fkb} KiB folios; ' + notes)
    elif s.startswith('Shivank Garg talk proposal'):
        add(r, source='garg-meetup-2026-03', profile='epyc-zen3-2s', date='2026-03-25', trust='B', folio_kb=4,
            n_folios=65536, batch_limit_pages=512, copy_engine='cpu', copy_threads=1, variant='vanilla kernel',
            metric='copy_fraction', value=0.25, unit='1',
            notes="published as '~25%' of total migration cost spent copying; 256 MB between DRAM nodes; " + notes)
    elif s.startswith('Liu et al., DSA-2LM'):
        add(r, source='dsa-2lm-atc-2025', profile='spr-dsa-2s', date='2025-07', trust='C', copy_engine='dsa',
            variant='DSA vs a single CPU core (up to)', metric='throughput_ratio', value=4, unit='x',
            notes='abstract only; DSA channel count and transfer size not read; ' + notes)
    elif s.startswith('Yicong Yang'):
        if 'Snapdragon' in r['machine']:
            continue
        add(r, source='yang-arm64-batched-tlb-2022-11', profile='kunpeng920-2s', date='2022-11-15', trust='C',
            folio_kb=4, n_folios=1, batch_limit_pages=1, copy_engine='cpu', copy_threads=1,
            variant='ptep_clear_flush; paging out 1 page mapped by 1 process; no batching',
            metric='cpu_cycles_fraction', value=float(val), unit='%',
            notes='perf top share; Kunpeng 920 inferred from the v2 changelog; reclaim micro-benchmark, not migration')
    elif s.startswith('Rik van Riel') and 'share of CPU' in met:
        for v, lab in ((float(r['baseline_value']), 'vanilla'), (4.0, 'with INVLPGB')):
            add(r, source='vanriel-invlpgb-2024-12', profile='epyc-zen3-2s', date='2024-12-22', trust='B',
                variant=f'TLB invalidation; will-it-scale tlb_flush2_threads; {lab}', metric='cpu_cycles_fraction',
                value=v, unit='%', notes='AMD Milan 36 cores mapped to the Zen 3 profile; flush microbenchmark, not '
                'migration; ' + ("published '~4%'" if lab != 'vanilla' else "'~40%' baseline"))

out = pd.DataFrame(rows)
# Kernel each source ran, or the cycle its series was posted against (MAJOR.MINOR).
KERNEL = {
    'yan-rfc-2019-04': '5.0',  # "pre-batching kernel (~v5.0)"
    'huang-rfc-reply-2022-09': '6.0',  # RFC posted 2022-09-21, during the 6.0 cycle (6.0-rc6)
    'yang-arm64-batched-tlb-2022-11': '6.1',  # v6 posted 2022-11-15 (6.1-rc5)
    'lkp-flush-regression-2023-03': '6.3',  # commit 7e12beb8ca in mm for 6.3 (robot ran 6.3-rc)
    'huang-unmap-inaccessible-2023-04': '6.4',  # posted 2023-04, merged for 6.4
    'garg-rfc-dma-2024-06': '6.8',  # "Linux 6.8" in the cover letter
    'vanriel-invlpgb-2024-12': '6.13',  # RFC v2 posted 2024-12-22 (6.13-rc)
    'garg-rfc-v2-2025-03': '6.14',  # "6.14" in the cover letter
    'yan-slides-mt-2025': '6.14',  # linked in the 2025-03 LSFMM/MM thread (6.14 cycle)
    'dsa-2lm-atc-2025': '6.15',  # paper of 2025-07: kernel not stated; cycle of its date
    'garg-v4-2026-03': '7.0',  # "7.0-rc2"
    'garg-meetup-2026-03': '7.0',  # 2026-03: the 7.0 cycle
    'garg-v5-2026-05': '7.1',  # "7.1-rc1"
}
# The model knows releases up to 6.18 (models/MECHANISM.md): newer ones are recorded as 6.18, the
# newest it models, and the row says which release the source ran.
NEWEST_MODELED = '6.18'
ran = out['source'].map(KERNEL)
newer = ran.map(lambda k: tuple(map(int, k.split('.'))) > (6, 18))
out['notes'] = [n + (f'; ran Linux {k}, recorded as {NEWEST_MODELED} (the newest release the model knows)'
                     if nw else '') for n, k, nw in zip(out['notes'], ran, newer)]
out['kernel'] = ran.where(~newer, NEWEST_MODELED)
assert out['kernel'].notna().all(), sorted(set(out['source'][out['kernel'].isna()]))
cols = ['source', 'reference', 'machine', 'profile', 'date', 'trust', 'folio_kb', 'n_folios', 'batch_limit_pages',
        'copy_engine', 'copy_threads', 'target_cpus', 'mapcount', 'busy_prob', 'access_rate_hz', 'mode', 'kernel',
        'variant', 'metric', 'value', 'sd', 'unit', 'notes']
out = out[cols]
# convert to SI at curation time (the file stores SI, as MEASUREMENTS.md asks)
def si(row):
    if row['unit'] == 'GB/s':
        row['value'] = f"{float(row['value']) * 1e9:.6g}"
        if row['sd'] != '' and row['sd'] is not None: row['sd'] = f"{float(row['sd']) * 1e9:.6g}"
        row['unit'] = 'B/s'
    elif row['unit'] == '%':
        row['value'] = f"{float(row['value']) / 100:.6g}"
        row['unit'] = '1'
    elif row['unit'] == 'x':
        row['unit'] = '1'
    return row
out = out.apply(si, axis=1)
out.to_csv(sys.argv[1] if len(sys.argv) > 1 else 'models/data/measurements.csv', index=False)
print(len(out), out.groupby(['source', 'metric']).size())
