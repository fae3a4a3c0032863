#!/usr/bin/env python3
"""Development sweep of the `bdense` command (issue 14; not run in CI,
test_cli holds the CI subset).  Every subcommand, every option read from
its --help: numeric options with 17 values (malformed, non-finite,
overflowing, edge), file options with 15 hostile files, output options
with 6 unwritable targets, --data with 23 specs, list options with 8
strings.  Each run gets 60 s; prints one line per run with -v and a
summary: runs, accepted, refused, and every run that ended by a signal,
timed out or was refused without a message.
Usage: /usr/bin/python3 tools/cli_sweep.py build/bdense [-v]
Needs numpy (fixtures).  Takes 10-20 minutes on 2 cores."""
import subprocess, os, re, sys, struct, itertools
B=os.path.abspath(sys.argv[1]); import tempfile; T0=tempfile.mkdtemp(prefix="bdense_sweep_"); D=T0+"/fx"; O=T0+"/out"; os.makedirs(O,exist_ok=True)
import shutil; shutil.rmtree(D,ignore_errors=True); os.makedirs(D)
def run(a): subprocess.run([B]+a,check=True,capture_output=True)
run(['init','--config','tiny','--image-size','8','--ch','8','--groups','2','--out',D+'/t.st','--quiet'])
run(['trajectories','--teacher',D+'/t.st','--student-steps','2','--teacher-substeps','2','--n','8','--out',D+'/traj.npy','--quiet'])
run(['distill','--teacher',D+'/t.st','--trajectories',D+'/traj.npy','--student-steps','2','--teacher-substeps','2','--steps','2','--batch','4','--eval-n','4','--out',D+'/s.st','--quiet'])
run(['sample','--ckpt',D+'/t.st','--n','4','--steps','2','--out',D+'/x.npy','--quiet'])
# hostile files
open(D+'/empty','wb').close()
open(D+'/junk','wb').write(b'\x93NUMPY garbage'*10)
os.makedirs(D+'/adir',exist_ok=True)
import numpy as np
np.save(D+'/zero.npy', np.zeros((0,1,8,8),np.float32))
np.save(D+'/nan.npy', np.full((4,1,8,8),np.nan,np.float32))
np.save(D+'/zdim.npy', np.zeros((4,0,8,8),np.float32))
np.save(D+'/big.npy', np.zeros((4,1,8,8),np.float32)+1e30)
np.save(D+'/i32.npy', np.zeros((4,1,8,8),np.int32))
np.save(D+'/wrongshape.npy', np.zeros((4,3,9,9),np.float32))
np.save(D+'/traj_bad.npy', np.zeros((8,3,64),np.float32))
np.save(D+'/vec.npy', np.zeros((5,),np.float32))
np.save(D+'/one.npy', np.zeros((1,1,8,8),np.float32))
os.makedirs(D+'/idx0',exist_ok=True); open(D+'/idx0/train-images-idx3-ubyte','wb').write(struct.pack('>IIII',0x803,0,8,8))
open(D+'/idx0/t10k-images-idx3-ubyte','wb').write(struct.pack('>IIII',0x803,0,8,8))
os.makedirs(D+'/idx1',exist_ok=True); open(D+'/idx1/train-images-idx3-ubyte','wb').write(struct.pack('>IIII',0x803,1,8,8)+bytes(64))
open(D+'/idx1/t10k-images-idx3-ubyte','wb').write(struct.pack('>IIII',0x803,1,8,8)+bytes(64))
os.makedirs(D+'/idxr0',exist_ok=True); open(D+'/idxr0/train-images-idx3-ubyte','wb').write(struct.pack('>IIII',0x803,5,0,8))
NUM={'N','S','B','X','LR','KT','K','G','DECAY','C','T','R','D'}
NUMV=['1','3','1000000','0','-1','nan','inf','-inf','1e400','99999999999999999999','-9223372036854775809','abc','','1.5','0x10','1e-400','3 ']
T=D+'/t.st'; S=D+'/s.st'
base={
 'init':['--config','tiny','--image-size','8','--ch','8','--groups','2','--out',O+'/i.st'],
 'train':['--data','builtin:8','--init',T,'--steps','2','--batch','2','--out',O+'/tr.st'],
 'sample':['--ckpt',T,'--n','2','--steps','2','--out',O+'/x.npy'],
 'forward':['--ckpt',T,'--input',D+'/one.npy','--t','0.5','--out',O+'/f.npy'],
 'info':['--ckpt',T],
 'eval':['--samples',D+'/x.npy','--data','builtin:8','--n','4','--ref-n','4'],
 'distill':['--teacher',T,'--trajectories',D+'/traj.npy','--student-steps','2','--teacher-substeps','2','--steps','2','--batch','4','--eval-n','4','--out',O+'/d.st'],
 'trajectories':['--teacher',T,'--student-steps','2','--teacher-substeps','2','--n','4','--out',O+'/tj.npy'],
 'compare':['--teacher',T,'--students',S,'--n','4','--ref-steps','2','--ref-n','4'],
 'data':['--data','builtin:8','--n','4','--grid',O+'/g.png'],
}
FILEV=['',D+'/empty',D+'/junk',D+'/adir','/nonexistent/x/y',D+'/zero.npy',D+'/nan.npy',D+'/zdim.npy',D+'/i32.npy',D+'/wrongshape.npy',D+'/traj_bad.npy',D+'/vec.npy','/dev/null',T,S]
OUTV=['',D+'/adir','/proc/nope/x','/dev/full',O+'/new/sub/x','/nonexistent_root_dir_x/y']
DATAV=['builtin:0','builtin:-5','builtin:nan','builtin:','builtin:99999999999999999999','fmnist:','fmnist:'+D+'/idx0','fmnist-test:'+D+'/idx0','fmnist:'+D+'/idx1','fmnist:'+D+'/idxr0','npy:'+D+'/zero.npy','npy:'+D+'/nan.npy','npy:'+D+'/zdim.npy','npy:'+D+'/big.npy','npy:'+D+'/i32.npy','npy:'+D+'/wrongshape.npy','npy:'+D+'/vec.npy','npy:'+D+'/empty','npy:','npy:'+D+'/adir','npy:'+D+'/one.npy','fmnist:/dev/null','x']
res={'ok':0,'refused':0,'signal':[],'timeout':[],'nomsg':[]}
def opt_replace(args,name,val):
    a=list(args)
    if '--'+name in a:
        i=a.index('--'+name); a[i+1]=val
    else: a+=['--'+name,val]
    return a
n=0
for cmd,bargs in base.items():
    h=subprocess.run([B,cmd,'--help'],capture_output=True,text=True).stdout
    opts=[]
    for line in h.splitlines():
        m=re.match(r'^  --([a-z0-9-]+)(?: (\S+))?',line)
        if m: opts.append((m.group(1),m.group(2)))
    for name,meta in opts:
        if name in ('help','quiet','device'): continue
        if meta in NUM or name=='threads': vals=NUMV
        elif name=='data' or name=='real': vals=DATAV
        elif name in ('out','grid','grids','log','plot','csv','npy'): vals=OUTV
        elif meta in ('FILE','FILE...','PNG','CSV','PREFIX','SPEC'): vals=FILEV
        elif meta in ('LIST','N...'): vals=['','0','1,0','-1','nan','1,2,3,4,5,6,7,8,9','99999999999','1,,2']
        else: continue
        for v in vals:
            a=opt_replace(bargs,name,v)
            n+=1
            try:
                p=subprocess.run([B,cmd]+a+['--quiet'],capture_output=True,text=True,timeout=60,cwd=O)
            except subprocess.TimeoutExpired:
                res['timeout'].append((cmd,name,v)); continue
            rc=p.returncode
            if rc<0 or rc>=128: res['signal'].append((cmd,name,v,rc,p.stderr[-300:]))
            elif rc==0: res['ok']+=1
            else:
                res['refused']+=1
                if 'error' not in p.stderr: res['nomsg'].append((cmd,name,v,rc,p.stderr[-200:]))
            if '-v' in sys.argv[2:]: print(cmd,name,repr(v),rc,p.stderr.strip().splitlines()[-1:] if p.stderr else '')
print('runs',n,'ok',res['ok'],'refused',res['refused'])
for k in ('signal','timeout','nomsg'):
    print(k,len(res[k]))
    for x in res[k]: print('  ',x)
shutil.rmtree(T0,ignore_errors=True)
